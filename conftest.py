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
        from trainer import export, model  # pylint: disable=import-outside-toplevel
        # The seed's start: an untrained model whose classes are clear of ties in the last bits.
        export.export_serving_model(model.ResNet50(input_shape=(64, 64, 3), classes=6, zero_init_residual=False),
                                    str(path))
    return str(path)


def pytest_collection_modifyitems(config, items):
    """For `make test`'s workers (`--dist loadgroup`): each test file runs whole on one worker, so its
    module fixtures (a pipeline run shared by its tests) are made once; the Kubeflow end-to-end file
    is split by install, each on a worker of its own (it is the longest file)."""
    del config
    for item in items:
        group = item.nodeid.split("::")[0]
        install = item.callspec.params.get("install") if hasattr(item, "callspec") else None
        if install:  # no brackets: xdist reads a group name up to a closing "]" as part of the test's id
            group += f"-{install}"
        item.add_marker(pytest.mark.xdist_group(group))
