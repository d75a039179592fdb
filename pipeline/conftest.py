"""Fixtures of the serving tests: an exported model, and its signatures called directly."""

import pytest


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    """An untrained ResNet50 exported with both signatures (once per session)."""
    path = tmp_path_factory.getbasetemp() / "serve-model"
    if not (path / "saved_model.pb").exists():
        from trainer import export, model  # pylint: disable=import-outside-toplevel
        # The seed's start: an untrained model whose classes are clear of ties in the last bits.
        export.export_serving_model(model.ResNet50(input_shape=(64, 64, 3), classes=6, zero_init_residual=False),
                                    str(path))
    return str(path)


@pytest.fixture(scope="module")
def direct(exported_model):
    """The SavedModel's signatures, called directly."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    loaded = tf.saved_model.load(exported_model)
    return {name: loaded.signatures[name] for name in ("serving_default", "serve_image_bytes")}
