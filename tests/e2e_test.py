"""End to end: the whole TFX pipeline on a few dozen images, then ML Metadata and the pushed model."""

import glob
import os
import re
import shutil
import json

import numpy as np
import pytest
import tensorflow as tf

from components.data import synthetic
from components.report import run_summary
from testsupport.fixtures import png_bytes
from tests.helpers import run_pipeline

pytestmark = pytest.mark.e2e
COMPONENTS = list(run_summary.COMPONENT_ORDER)


@pytest.fixture(scope="session")
def planted_h5(tiny_h5, tmp_path_factory):
    """The tiny h5 pair with train image 5 planted as test image 0: a duplicate across splits."""
    import h5py  # pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("planted_h5")
    for name in ("train_signs.h5", "test_signs.h5"):
        shutil.copy(os.path.join(tiny_h5, name), folder / name)
    with h5py.File(folder / "train_signs.h5", "r") as train, h5py.File(folder / "test_signs.h5", "r+") as test:
        test["test_set_x"][0] = train["train_set_x"][5]
        test["test_set_y"][0] = train["train_set_y"][5]
    return str(folder)


@pytest.fixture(scope="session")
def first_run(planted_h5, tmp_path_factory):
    """One full run on the tiny h5 pair: 1 epoch, a threshold of 0 so the model is blessed."""
    root = str(tmp_path_factory.mktemp("e2e_root"))
    args = ["--data", planted_h5, "--epochs", "1", "--batch-size", "12", "--learning-rate", "0.002",
            "--min-accuracy", "0", "--pipeline-root", root]
    proc = run_pipeline(*args)
    return root, args, proc


def _store(root):
    return run_summary.open_store(os.path.join(root, "metadata.sqlite"))


def _live_artifacts(store, type_name):
    live = 2  # metadata_store_pb2.Artifact.LIVE
    return [a for a in store.get_artifacts_by_type(type_name) if a.state == live]


def _trained_models(store):
    """Models the Trainer wrote (LatestServedModel's baselines are Models too)."""
    return [a for a in _live_artifacts(store, "Model") if "/Trainer/" in a.uri]


def test_first_run_succeeds_and_summarises(first_run):
    root, _, proc = first_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    lines = out.splitlines()
    for name in COMPONENTS:  # progress, from ML Metadata's execution states: started, then done
        started = [i for i, l in enumerate(lines) if re.match(rf"\[ *\d+s\] {name} \.\.\.$", l)]
        done = [i for i, l in enumerate(lines) if re.match(rf"\[ *\d+s\] {name} done \(\d+ s\)$", l)]
        # A component done within one poll of ML Metadata (a second) may show only its "done" line.
        assert len(done) == 1 and len(started) <= 1 and all(i < done[0] for i in started), name
    assert re.search(r"^\[ *\d+s\] Trainer \.\.\.$", out, re.M)  # minutes long: seen running
    assert "signs-pipeline run summary" in out
    assert "eval accuracy:" in out and "blessed:       YES" in out
    assert "passes the bar >= 0." in out  # the deciding threshold is named
    # Every branch of the summary prints "pushed model:"; this one names the version it pushed.
    assert f"pushed model:  {os.path.join(root, 'serving_model', '1')}\n" in out


def test_ml_metadata_records_the_run(first_run):
    root, _, _ = first_run
    store = _store(root)
    types = {t.id: t.name for t in store.get_execution_types()}
    executions = store.get_executions()
    per_component = {}
    for e in executions:
        per_component.setdefault(types[e.type_id].rsplit(".", 1)[-1], []).append(e)
    assert sorted(per_component) == sorted(
        ["FileBasedExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
         "DataChecks", "SignsTrainer", "LatestServedModel", "BaselineAwareEvaluator",
         "VersionedPusher", "Review"])
    assert all(len(v) == 1 for v in per_component.values()), per_component.keys()
    assert all(e.last_known_state == 3 for e in executions)  # COMPLETE

    [examples] = _live_artifacts(store, "Examples")
    assert examples.properties["split_names"].string_value == '["train", "eval"]'
    for split in ("train", "eval"):
        assert glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    assert len(_trained_models(store)) == 1
    [blessing] = _live_artifacts(store, "ModelBlessing")
    assert blessing.custom_properties["blessed"].int_value == 1
    [pushed] = _live_artifacts(store, "PushedModel")
    assert pushed.custom_properties["pushed"].int_value == 1


def test_planted_duplicate_across_splits_is_reported(first_run):
    root, _, proc = first_run
    assert "duplicates:  0 within train, 0 within eval, 1 across splits" in proc.stdout
    assert "warning: 1 image(s) appear in more than one split, e.g. train: train_signs.h5[5] == eval: test_signs.h5[0]" in proc.stdout
    [findings] = _live_artifacts(_store(root), "components.DataFindings")
    assert findings.custom_properties["duplicates_across_splits"].int_value == 1
    assert findings.custom_properties["errors"].int_value == 0
    [schema] = _live_artifacts(_store(root), "Schema")[-1:]
    assert "int_domain" in open(os.path.join(schema.uri, "schema.pbtxt")).read()


def test_trainer_leaves_history_and_summary(first_run):
    root, _, _ = first_run
    [model] = _trained_models(_store(root))
    history = json.load(open(os.path.join(model.uri, "history.json")))
    assert history["config"]["epochs"] == 1 and len(history["epochs"]) == 1
    assert (history["config"]["learning_rate"], history["config"]["batch_size"]) == (0.002, 12)  # the flags'
    assert {"loss", "accuracy", "val_accuracy", "seconds", "learning_rate"} <= set(history["epochs"][0])
    from trainer.task import cpu_has_amx_bf16  # pylint: disable=import-outside-toplevel
    precision = "mixed_bfloat16" if cpu_has_amx_bf16() else "float32"
    assert history["devices"] == {"gpus": 0, "replicas": 1, "precision": precision, "jit_compile": False,
                                  "strategy": "_DefaultDistributionStrategy"}
    assert history["exported_epoch"] == 1 and history["resumed_from_epoch"] is None
    assert history["config"]["augment"] and history["config"]["checkpoint_root"] == os.path.join(root, "checkpoints")
    assert os.listdir(os.path.join(root, "checkpoints")) == []  # cleared once the model is exported
    [run] = _live_artifacts(_store(root), "ModelRun")
    events = glob.glob(os.path.join(run.uri, "tensorboard", "*", "events.out.tfevents.*"))
    assert {os.path.basename(os.path.dirname(e)) for e in events} == {"train", "validation"}
    text = open(os.path.join(run.uri, "model_summary.txt")).read()
    assert "res2a_branch2a" in text and "bn5c_branch2c" in text and "fc6" in text
    assert "Trainable params: 23,546,886" in text and "Non-trainable params: 53,120" in text


def test_pushed_model_answers_both_signatures(first_run, tiny_h5):
    root, _, _ = first_run
    [pushed] = _live_artifacts(_store(root), "PushedModel")
    path = pushed.custom_properties["pushed_destination"].string_value
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    loaded = tf.saved_model.load(path)
    assert {"serving_default", "serve_image_bytes"} <= set(loaded.signatures)

    images, labels = synthetic.make_split(3, seed=11)
    from components.data.example_gen import to_example  # pylint: disable=import-outside-toplevel
    serialized = [to_example(im, int(y), f"t{i}").SerializeToString() for i, (im, y) in enumerate(zip(images, labels))]
    out = loaded.signatures["serving_default"](examples=tf.constant(serialized))
    probs = out["probabilities"].numpy()
    assert probs.shape == (3, 6) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)

    big = np.asarray(tf.image.resize(images[0], (150, 120)).numpy(), dtype=np.uint8)
    raw = [png_bytes(images[0]), png_bytes(big, "JPEG")]
    out = loaded.signatures["serve_image_bytes"](image_bytes=tf.constant(raw))
    assert out["probabilities"].shape == (2, 6)
    assert out["classes"].numpy().tolist() == np.argmax(out["probabilities"].numpy(), axis=1).tolist()
    # The same PNG gives the same answer through both signatures.
    np.testing.assert_allclose(out["probabilities"].numpy()[0], probs[0], atol=1e-5)


@pytest.fixture(scope="session")
def second_run(first_run):
    root, args, _ = first_run
    return run_pipeline(*args)


def test_rerun_reuses_the_cache(first_run, second_run):
    """The second run sees version 1 serving (its own model): training is reused, the evaluation
    runs against that baseline, and nothing is pushed again. A third run reuses everything."""
    assert second_run.returncode == 0, second_run.stdout[-3000:]
    assert ("reused from cache (inputs unchanged): ExampleGen, StatisticsGen, SchemaGen, "
            "CurateSchema, ExampleValidator, DataChecks, Trainer") in second_run.stdout
    assert "this model already serves as version 1" in second_run.stdout
    for name in ("ExampleGen", "Trainer"):
        assert re.search(rf"^\[ *\d+s\] {name} reused from cache$", second_run.stdout, re.M), name
    root, args, _ = first_run
    store = _store(root)
    assert len(_trained_models(store)) == 1
    trainer_type = [t.name for t in store.get_execution_types() if t.name.endswith("Trainer")][0]
    states = sorted(e.last_known_state for e in store.get_executions_by_type(trainer_type))
    assert states == [3, 5]  # COMPLETE once, then CACHED: trained only once
    assert os.listdir(os.path.join(root, "serving_model")) == ["1"]

    third = run_pipeline(*args)
    assert third.returncode == 0
    [cached] = [l for l in third.stdout.splitlines() if "reused from cache (inputs unchanged): " in l]
    assert set(cached.split(": ", 1)[1].split(", ")) == set(COMPONENTS)


def test_corrupt_image_stops_the_run_and_registers_nothing(first_run, second_run, tmp_path):
    """Runs on the same pipeline root, after the good runs: the pushed model must survive."""
    root, _, _ = first_run
    folder = tmp_path / "photos"
    images, labels = synthetic.make_split(24, seed=3)
    for i, (image, label) in enumerate(zip(images, labels)):
        os.makedirs(folder / str(label), exist_ok=True)
        (folder / str(label) / f"img{i}.png").write_bytes(png_bytes(image))
    bad = folder / "4" / "broken.jpg"
    bad.write_bytes(png_bytes(images[0], "JPEG")[:300])  # truncated JPEG
    serving = os.path.join(root, "serving_model")
    before = sorted(os.listdir(serving))
    examples_before = len(_live_artifacts(_store(root), "Examples"))

    proc = run_pipeline("--data", str(folder), "--epochs", "1", "--min-accuracy", "0",
                        "--pipeline-root", root)
    assert proc.returncode == 2
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(bad) in last and "not a decodable image" in last
    assert "Traceback" not in proc.stdout
    assert len(_live_artifacts(_store(root), "Examples")) == examples_before
    assert sorted(os.listdir(serving)) == before
    shutil.rmtree(folder)


def test_missing_data_path_is_one_line(tmp_path):
    proc = run_pipeline("--data", str(tmp_path / "nope"), "--pipeline-root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines()[-1] == f"error: {tmp_path / 'nope'}: no such file or directory"


def test_anomaly_against_a_curated_schema_stops_before_the_trainer(tiny_h5, tmp_path):
    """--schema with a label domain of 0..4: label 5 in the data is an anomaly, and the gate holds."""
    from components.validation.schema import signs_schema  # pylint: disable=import-outside-toplevel
    schema_path = tmp_path / "schema.pbtxt"
    schema_path.write_text(str(signs_schema([0, 1, 2, 3, 4])))
    root = str(tmp_path / "root")
    proc = run_pipeline("--data", tiny_h5, "--schema", str(schema_path), "--epochs", "1",
                        "--pipeline-root", root)
    assert proc.returncode == 2, proc.stdout[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("error: data validation failed, ")
    assert "train: feature 'label' expected INT, in [0, 4]" in last and "Unexpectedly large value: 5" in last
    assert "Traceback" not in proc.stdout
    assert "SchemaImporter    complete" in proc.stdout and "DataChecks        failed" in proc.stdout
    assert "Trainer           not run" in proc.stdout
    store = _store(root)
    assert not _trained_models(store) and not _live_artifacts(store, "components.DataFindings")
    assert not os.path.exists(os.path.join(root, "serving_model"))


def _run_ids(stdout):
    started = [l.split(": ", 1)[1] for l in stdout.splitlines() if l.startswith("Run id: ")]
    summarised = [l.split(":", 1)[1].strip() for l in stdout.splitlines() if l.startswith("run id:")]
    return started, summarised


def test_each_summary_describes_its_own_run(first_run, second_run):
    """Two runs on one root: each summary reads the run its process started, not the newest one."""
    root, _, first = first_run
    (first_id,), (first_summarised,) = _run_ids(first.stdout)
    (second_id,), (second_summarised,) = _run_ids(second_run.stdout)
    assert first_id == first_summarised and second_id == second_summarised and first_id != second_id
    from components.report import run_summary  # pylint: disable=import-outside-toplevel
    metadata_path = os.path.join(root, "metadata.sqlite")
    older = run_summary.run_by_id(metadata_path, first_id)
    assert older.run_id == first_id and older.pushed_to == os.path.join(root, "serving_model", "1")
    assert run_summary.latest_run(metadata_path).run_id != first_id
