"""LatestServedModel: the newest version that can be served is the baseline; broken ones are named and passed over."""

import os

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components.evaluation import baseline as baseline_component
from components.push import version_dirs
from testsupport.saved_models import saved_model

choose = baseline_component.LatestServedModel.EXECUTOR_SPEC.executor_class._FUNCTION  # pylint: disable=protected-access


def _run(serving_dir, tmp_path):
    artifact = standard_artifacts.Model()
    artifact.uri = str(tmp_path / "baseline")
    choose(serving_dir=serving_dir, serving_state="", baseline=artifact)
    return artifact


def test_a_garbage_newest_version_is_passed_over_and_named(tmp_path):
    """It used to be the baseline, and every later run failed at the Evaluator until it was deleted by hand."""
    serving_dir = str(tmp_path / "serving")
    version_dirs.push(saved_model(tmp_path / "good", 2.0), serving_dir, {})
    version_dirs.push(saved_model(tmp_path / "broken"), serving_dir, {})
    with open(os.path.join(serving_dir, "2", version_dirs.SAVED_MODEL), "wb") as f:
        f.write(b"\x00garbage" * 10)
    chosen = _run(serving_dir, tmp_path)
    assert chosen.get_int_custom_property("served_version") == 1
    assert chosen.get_int_custom_property(baseline_component.ABSENT) == 0
    skipped = chosen.get_string_custom_property(baseline_component.SKIPPED)
    assert skipped.startswith(f"version 2 ({serving_dir}/2) cannot be served: saved_model.pb ") and "\n" not in skipped
    loaded = tf.saved_model.load(os.path.join(chosen.uri, "Format-Serving"))
    probabilities = loaded.signatures["serving_default"](examples=tf.constant([b""]))["probabilities"].numpy()
    assert probabilities.argmax() == 1 and probabilities.max() > 0.5  # version 1's (factor 2), not version 2's


def test_when_no_version_can_be_served_there_is_no_baseline(tmp_path):
    serving_dir = str(tmp_path / "serving")
    version_dirs.push(saved_model(tmp_path / "m"), serving_dir, {})
    os.remove(os.path.join(serving_dir, "1", "variables", "variables.index"))
    chosen = _run(serving_dir, tmp_path)
    assert chosen.get_int_custom_property(baseline_component.ABSENT) == 1
    assert "variables/variables.index is missing" in chosen.get_string_custom_property(baseline_component.SKIPPED)


@pytest.mark.parametrize("damage, problem", [
    ("garbage", "is not a SavedModel"),
    ("no serve graph", "holds no graph tagged 'serve'"),
    ("truncated variables", "its variables do not read"),
    ("fifo", "saved_model.pb is not a regular file"),
])
def test_what_cannot_be_served_is_found_without_building_the_model(damage, problem, tmp_path):
    path = saved_model(tmp_path / "m")
    assert version_dirs.model_problem(path) is None
    pb = os.path.join(path, version_dirs.SAVED_MODEL)
    if damage == "garbage":
        with open(pb, "wb") as f:
            f.write(b"\xff" * 64)
    elif damage == "no serve graph":
        from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
        with open(pb, "wb") as f:
            f.write(saved_model_pb2.SavedModel(meta_graphs=[{}]).SerializeToString())
    elif damage == "truncated variables":
        data = [n for n in os.listdir(os.path.join(path, "variables")) if ".data-" in n][0]
        with open(os.path.join(path, "variables", data), "r+b") as f:
            f.truncate(4)
    else:  # a reader would block on it for good
        os.remove(pb)
        os.mkfifo(pb)
    assert problem in version_dirs.model_problem(path)


def test_a_gated_push_goes_past_versions_that_cannot_be_served(tmp_path):
    """Gated on version 1 (2 is garbage): the push lands as 3. Gated on 1 while a good 2 landed: refused."""
    serving_dir = str(tmp_path / "serving")
    for factor in (1, 2):
        version_dirs.push(saved_model(tmp_path / f"m{factor}", factor), serving_dir, {})
    with pytest.raises(version_dirs.PushConflict):
        version_dirs.push(saved_model(tmp_path / "late"), serving_dir, {}, after=1)
    with open(os.path.join(serving_dir, "2", version_dirs.SAVED_MODEL), "wb") as f:
        f.write(b"\xff" * 64)
    assert version_dirs.newest_servable(serving_dir) == (1, [(2, "saved_model.pb is not a SavedModel")])
    assert version_dirs.push(saved_model(tmp_path / "next"), serving_dir, {}, after=1) == 3
