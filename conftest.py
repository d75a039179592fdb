"""Loaded by pytest before any test module: the tests run TensorFlow as the entry points do, and share one
exported model for the serving tests."""

import pytest

from components.data import startup

startup.enable()  # before any test imports TensorFlow


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    """An untrained ResNet50 exported with both signatures (once per session, for every serving test)."""
    path = tmp_path_factory.getbasetemp() / "serve-model"
    if not (path / "saved_model.pb").exists():
        from trainer import export, resnet  # pylint: disable=import-outside-toplevel
        # The seed's start: an untrained model whose classes are clear of ties in the last bits.
        export.export_serving_model(resnet.ResNet50(input_shape=(64, 64, 3), classes=6, zero_init_residual=False),
                                    str(path))
    return str(path)

