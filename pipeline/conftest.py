"""Fixtures of the serving tests: the exported model's signatures, called directly (the model: ../conftest.py)."""

import pytest


@pytest.fixture(scope="module")
def direct(exported_model):
    """The SavedModel's signatures, called directly."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    loaded = tf.saved_model.load(exported_model)
    return {name: loaded.signatures[name] for name in ("serving_default", "serve_image_bytes")}
