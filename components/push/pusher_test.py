"""The Pusher executor racing itself: two runs blessed against the same serving version.

Each process runs our Pusher executor as TFX would (artifacts, exec properties), on a disk and on an
object store (moto's S3, as MinIO). Exactly one model ships as the next version; the other run is
marked not pushed with its one-line reason, so no pushed version skipped its gate.
"""

import multiprocessing
import os
import json

import pytest

from components.data import startup
from testsupport import fixtures
from components.data import storage
from components.push import version_dirs
from testsupport.saved_models import saved_model
from components.push import kserve_manifests, pusher


def _model_artifact(path, payload):
    """A Trainer's Model artifact: the test SavedModel, and the canary request the Trainer writes
    beside it (its answer to every image: softmax([0, 1, 0, 0, 0, 0]))."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from components.push import canary  # pylint: disable=import-outside-toplevel
    saved_model(os.path.join(path, "Format-Serving"), payload=payload * 200_000)
    answer = np.exp([0.0, 1, 0, 0, 0, 0]) / np.exp([0.0, 1, 0, 0, 0, 0]).sum()
    canary.write_expected(path, lambda images: [answer] * len(images))
    return path


def _push(barrier, model_uri, blessing_uri, serving_dir, compared_with, results, env):
    os.environ.update(env)
    startup.start_process()  # a process of its own: its store settings from that environment
    # pylint: disable=import-outside-toplevel
    from google.protobuf import json_format
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from components.push import pusher
    from components.evaluation.evaluator import COMPARED_WITH_KEY

    model, blessing, pushed = standard_artifacts.Model(), standard_artifacts.ModelBlessing(), standard_artifacts.PushedModel()
    model.uri, blessing.uri, pushed.uri = model_uri, blessing_uri, model_uri + "-pushed"
    model.id = abs(hash(model_uri)) % 10_000
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_int_custom_property(COMPARED_WITH_KEY, compared_with)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir))
    props = {"push_destination": json_format.MessageToJson(destination), "custom_config": "null"}
    barrier.wait()
    pusher.VersionedPusherExecutor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]}, props)
    props = pushed.mlmd_artifact.custom_properties
    results.put((props["pushed"].int_value,
                 props["pushed_version"].string_value if "pushed_version" in props else "",
                 props["not_pushed_reason"].string_value if "not_pushed_reason" in props else ""))


@pytest.fixture(scope="module")
def minio():
    with fixtures.stand_in_store("minio://mlpipeline") as store:
        yield store


@pytest.mark.slow
@pytest.mark.parametrize("where", ["disk", "store"])
def test_two_pushers_blessed_against_the_same_version_ship_one_model(where, minio, tmp_path):
    serving_dir = str(tmp_path / "serving") if where == "disk" else f"minio://mlpipeline/{tmp_path.name}/serving_model"
    first = _model_artifact(str(tmp_path / "first"), "v1")
    version_dirs.push(os.path.join(first, "Format-Serving"), serving_dir, {"model_uri": first})
    env = minio.env
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_push, args=(barrier, _model_artifact(str(tmp_path / f"m{i}"), f"w{i}"),
                                             str(tmp_path / f"blessing{i}"), serving_dir, 1, results, env))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    outcomes = sorted([results.get(), results.get()])
    assert outcomes[1][:2] == (1, "2")  # one run shipped version 2 ...
    # ... the other was gated out, and says why: version 2 landed, or (on a store, mid-copy) is being pushed.
    assert outcomes[0][0] == 0 and outcomes[0][2].endswith("; re-run to compare against it")
    assert outcomes[0][2].startswith(("version 2 was pushed while this run was evaluating against version 1",
                                      f"{version_dirs.version_dir(serving_dir, 2)} is being pushed by another run"))
    assert version_dirs.list_versions(serving_dir) == [1, 2]


@pytest.mark.parametrize("where", ["disk", "store"])
def test_a_push_to_a_store_leaves_its_kserve_manifest_in_the_version(where, minio, tmp_path):
    """With `kserve` settings the Pusher writes the version's InferenceService beside it, on a store only."""
    del minio
    # pylint: disable=import-outside-toplevel
    import yaml
    from google.protobuf import json_format
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts

    serving_dir = str(tmp_path / "serving") if where == "disk" else f"minio://mlpipeline/{tmp_path.name}/serving_model"
    model, blessing, pushed = standard_artifacts.Model(), standard_artifacts.ModelBlessing(), standard_artifacts.PushedModel()
    model.uri, blessing.uri, pushed.uri = _model_artifact(str(tmp_path / "m"), "v1"), str(tmp_path / "b"), str(tmp_path / "p")
    blessing.set_int_custom_property("blessed", 1)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir))
    props = {"push_destination": json_format.MessageToJson(destination),
             "custom_config": '{"kserve": {"name": "hands", "namespace": "ml", "service_account": null}}'}
    pusher.VersionedPusherExecutor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]}, props)
    assert version_dirs.list_versions(serving_dir) == [1]
    path = kserve_manifests.manifest_path(serving_dir, 1)
    if where == "disk":  # a local serving dir is served by `python -m pipeline.serve`, not KServe
        assert not storage.exists(path) and "kserve_manifest" not in pushed.mlmd_artifact.custom_properties
        return
    manifest = yaml.safe_load(storage.read_bytes(path))
    assert pushed.mlmd_artifact.custom_properties["kserve_manifest"].string_value == path
    assert manifest["metadata"]["name"] == "hands" and manifest["metadata"]["namespace"] == "ml"
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == f"s3://mlpipeline/{tmp_path.name}/serving_model"
    assert manifest["metadata"]["annotations"]["signs-pipeline/version"] == "1"


@pytest.mark.parametrize("damage, reason", [
    ("answers otherwise", "the candidate does not serve: serving_default answers the canary request unlike the "
                          "trained model (probabilities differ by up to "),
    ("variables cut short", "the candidate does not serve: its variables do not read ("),
    ("no canary request", "its canary request cannot be used, so the model was not tried: "),
])
def test_a_blessed_candidate_that_does_not_serve_is_not_pushed_and_says_why(damage, reason, tmp_path):
    """Nothing ships that cannot be served: the candidate is loaded in a process of its own first."""
    # pylint: disable=import-outside-toplevel
    from google.protobuf import json_format
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from components.push import canary, pusher

    serving_dir = str(tmp_path / "serving")
    model, blessing, pushed = standard_artifacts.Model(), standard_artifacts.ModelBlessing(), standard_artifacts.PushedModel()
    model.uri, blessing.uri, pushed.uri = _model_artifact(str(tmp_path / "m"), "v1"), str(tmp_path / "b"), str(tmp_path / "p")
    blessing.set_int_custom_property("blessed", 1)
    if damage == "answers otherwise":  # the test model answers softmax([0, 1, 0, 0, 0, 0]) to everything
        canary.write_expected(model.uri, lambda images: [[1.0, 0, 0, 0, 0, 0]] * len(images))
        assert json.load(open(os.path.join(model.uri, canary.CANARY_FILE)))["atol"] == 1e-3
    elif damage == "no canary request":
        os.remove(os.path.join(model.uri, canary.CANARY_FILE))
    else:
        variables = os.path.join(model.uri, "Format-Serving", "variables")
        data = [os.path.join(variables, n) for n in os.listdir(variables) if ".data-" in n][0]
        with open(data, "r+b") as f:
            f.truncate(3)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir))
    props = {"push_destination": json_format.MessageToJson(destination), "custom_config": "null"}
    pusher.VersionedPusherExecutor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]}, props)
    custom = pushed.mlmd_artifact.custom_properties
    assert custom["pushed"].int_value == 0 and custom["not_pushed_reason"].string_value.startswith(reason)
    assert version_dirs.list_versions(serving_dir) == []
