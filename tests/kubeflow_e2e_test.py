"""End to end: the compiled package on an object store, run as the open-source KFP backend runs it.

A stand-in S3 server (moto) on 127.0.0.1 plays KFP's MinIO; `run-local` plays the driver and the
launcher (executor inputs with empty input types, `executor-logs`, `minio://` URIs with local
copies, KFP's cache). The data is uploaded to the store first, as a user would.
"""

import json
import os
import subprocess
import sys

import pytest

from components.push import serving
from components.data import storage
from tests.helpers import REPO

pytestmark = pytest.mark.e2e

ROOT = "minio://mlpipeline/v2/artifacts"


def _runner(*args):
    proc = subprocess.run([sys.executable, "kubeflow/runner.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=1500)
    sys.stdout.write(proc.stdout[-3000:])
    return proc


@pytest.fixture(scope="module")
def store():
    with storage.stand_in_store(ROOT) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def two_runs(store, tiny_h5, tmp_path_factory):
    """Uploads the data, compiles, then runs the package twice in one work dir (one cache)."""
    del store
    tmp = tmp_path_factory.mktemp("kfp")
    storage.upload_tree(tiny_h5, f"{ROOT}/data")
    package, work = str(tmp / "pipeline.yaml"), str(tmp / "work")
    # A training knob set when compiling (the parameter's default), others per run.
    compiled = _runner("compile", "--output", package, "--pipeline-root", ROOT, "--image", "registry.example/signs:test",
                       "--learning-rate", "0.002")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr[-2000:]
    params = ["--param", "epochs=1", "--param", "batch_size=12", "--param", "augment=0",
              "--param", "min_accuracy=0", "--param", "min_improvement=-1"]
    first = _runner("run-local", package, *params, "--work-dir", work)
    assert first.returncode == 0, first.stdout[-3000:]
    second = _runner("run-local", package, *params, "--work-dir", work)
    assert second.returncode == 0, second.stdout[-3000:]
    return first.stdout, second.stdout, work


def test_first_run_pushes_to_the_object_store(two_runs):
    first, _, _ = two_runs
    for task in ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
                 "DataChecks", "Trainer", "LatestServedModel", "Evaluator", "Pusher", "Review"):
        assert f"{task} done" in first
    assert "baseline:      none (nothing was serving)" in first
    assert f"pushed model:  {ROOT}/serving_model/1" in first
    report = [l for l in first.splitlines() if l.startswith("review report: ")][0].split(": ", 1)[1]
    assert report.startswith(ROOT + "/signs/")
    assert "BLESSED." in storage.read_bytes(report).decode()


def test_second_run_is_gated_by_the_first_runs_model(two_runs):
    _, second, _ = two_runs
    # Same data, same parameters: KFP's cache answers up to the Trainer ...
    for task in ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator", "DataChecks", "Trainer"):
        assert f"{task} cached" in second, task
    # ... but the baseline is read again, and is the model the first run pushed.
    assert "LatestServedModel done" in second
    assert f"baseline:      version 1 ({ROOT}/serving_model/1)" in second
    assert f"pushed model:  {ROOT}/serving_model/2" in second
    assert serving.list_versions(f"{ROOT}/serving_model") == [1, 2]
    assert serving.push_info(f"{ROOT}/serving_model", 2)["version"] == 2


def test_each_push_leaves_its_kserve_manifest(two_runs):
    """The compiled Pusher writes the InferenceService that serves the serving dir, in each version."""
    del two_runs
    import yaml  # pylint: disable=import-outside-toplevel
    for version in (1, 2):
        manifest = yaml.safe_load(storage.read_bytes(f"{ROOT}/serving_model/{version}/inferenceservice.yaml"))
        assert manifest["kind"] == "InferenceService" and manifest["metadata"]["name"] == "signs"
        assert manifest["spec"]["predictor"]["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/serving_model"
        assert manifest["metadata"]["annotations"]["signs-pipeline/version"] == str(version)


def test_training_knobs_reach_fit(two_runs):
    """The Trainer recorded the config it trained with: the compile flag's default and the run's values."""
    _, _, work = two_runs
    run_dir = sorted(d for d in os.listdir(work) if not d.endswith(".json"))[0]
    with open(os.path.join(work, run_dir, "Trainer", "executor_input.json")) as f:
        model_uri = json.load(f)["outputs"]["artifacts"]["model"]["artifacts"][0]["uri"]
    history = json.loads(storage.read_bytes(f"{model_uri}/history.json"))
    config = history["config"]
    assert (config["learning_rate"], config["epochs"], config["batch_size"], config["augment"]) == (0.002, 1, 12, False)
    assert len(history["epochs"]) == 1


def test_tasks_got_what_the_open_source_launcher_gives(two_runs):
    _, _, work = two_runs
    run_dir = sorted(d for d in os.listdir(work) if not d.endswith(".json"))[0]
    with open(os.path.join(work, run_dir, "Evaluator", "executor_input.json")) as f:
        executor_in = json.load(f)
    for artifacts in executor_in["inputs"]["artifacts"].values():
        artifact = artifacts["artifacts"][0]
        assert artifact["type"] == {"instanceSchema": ""} and artifact["uri"].startswith(ROOT + "/")
    assert "executor-logs" in executor_in["outputs"]["artifacts"]
    assert "/launcher/minio/mlpipeline/" in executor_in["outputs"]["outputFile"]
    with open(os.path.join(work, run_dir, "ExampleGen", "executor_input.json")) as f:
        assert len(json.load(f)["inputs"]["parameterValues"]["data_fingerprint"]) == 16  # the data's, not ""


def test_no_directory_marker_objects_in_the_store(two_runs):
    """KFP's launcher downloads a `dir/` marker as a file and then cannot make that directory."""
    del two_runs
    import boto3  # pylint: disable=import-outside-toplevel
    client = boto3.client("s3", endpoint_url=os.environ["SIGNS_MINIO_ENDPOINT"])
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="mlpipeline")
            for o in page.get("Contents", [])]
    assert any(k.endswith("Format-Serving/saved_model.pb") for k in keys)
    assert [k for k in keys if k.endswith("/")] == []
