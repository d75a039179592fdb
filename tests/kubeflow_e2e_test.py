"""End to end: the compiled package run as the open-source KFP backend runs it, from the package alone.

`run-local --local-store` plays the cluster (a stand-in store under the release's service name,
KFP's secrets, a multi-user profile's key prefixes), the driver and the launcher (executor inputs
read back from ML Metadata, `executor-logs-0`, KFP's cache). This process's environment holds no
store setting: the tasks get only what the package gives them. Each install is run twice: a push,
then a run gated by it. The multi-user install runs the same tests from a file of its own
(kubeflow_multiuser_e2e_test.py), so that `make test`'s workers run the two side by side.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

from components.push import tf_serving
from tests.helpers import REPO

pytestmark = pytest.mark.e2e

PARAMS = ["--param", "epochs=1", "--param", "batch_size=12", "--param", "augment=0",
          "--param", "min_accuracy=0", "--param", "min_improvement=-1"]
INSTALLS = {  # name -> (compile flags, run-local flags, the root every task and the push land under)
    "single-user": ([], [], "minio://mlpipeline/v2/artifacts"),
    "multi-user": (["--namespace", "team-a"], ["--kfp-release", "2.17-multi-user"],
                   "minio://mlpipeline/private-artifacts/team-a/v2/artifacts"),
}


def _runner(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SIGNS_", "GOOGLE_", "STORAGE_EMULATOR"))}
    proc = subprocess.run([sys.executable, "kubeflow/runner.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1500, env=env)
    sys.stdout.write(proc.stdout[-3000:])
    return proc


def run_install(name, tiny_h5, tmp_path_factory):
    """Compiles for the install, then runs the package twice in one work dir (one store, one cache)."""
    compile_flags, run_flags, root = INSTALLS[name]
    tmp = tmp_path_factory.mktemp(name)
    package, work = str(tmp / "pipeline.yaml"), str(tmp / "work")
    # A training knob set when compiling (the parameter's default), others per run.
    compiled = _runner("compile", "--output", package, "--image", "registry.example/signs:test", "--learning-rate", "0.002",
                       *compile_flags)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr[-2000:]
    assert "store http://seaweedfs.kubeflow:9000" in compiled.stdout
    first = _runner("run-local", package, "--local-store", "--data", tiny_h5, "--work-dir", work, *run_flags, *PARAMS)
    assert first.returncode == 0, first.stdout[-3000:]
    second = _runner("run-local", package, "--local-store", "--work-dir", work, *run_flags, *PARAMS)
    assert second.returncode == 0, second.stdout[-3000:]
    return {"first": first.stdout, "second": second.stdout, "work": work, "root": root, "package": package}


@pytest.fixture(scope="module")
def install(tiny_h5, tmp_path_factory):
    """A single-user install (kubeflow_multiuser_e2e_test.py runs the same tests on a multi-user one)."""
    return run_install("single-user", tiny_h5, tmp_path_factory)


def _stored(install, uri):
    """A path in the stand-in store as run-local keeps it between runs."""
    return os.path.join(install["work"], "store", uri.split("://", 1)[1])


def _run_dirs(install):
    return sorted(d for d in os.listdir(install["work"]) if d[:8].isdigit())


def test_the_store_is_the_releases_service(install):
    assert "object store: a stand-in at seaweedfs.kubeflow:9000 -> 127.0.0.1:" in install["first"]


def test_first_run_pushes_under_the_root(install):
    first, root = install["first"], install["root"]
    for task in ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
                 "DataChecks", "Trainer", "LatestServedModel", "Evaluator", "Pusher", "Review"):
        assert f"{task} done" in first
    assert "baseline:      none (nothing was serving)" in first
    assert f"pushed model:  {root}/serving_model/1" in first
    report = [l for l in first.splitlines() if l.startswith("review report: ")][0].split(": ", 1)[1]
    assert report.startswith(root + "/signs/")
    assert "BLESSED." in open(_stored(install, report)).read()


def test_second_run_is_gated_by_the_first_runs_model(install):
    second, root = install["second"], install["root"]
    # Same data, same parameters: KFP's cache answers up to the Trainer ...
    for task in ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator", "DataChecks", "Trainer"):
        assert f"{task} cached" in second, task
    # ... but the baseline is read again, and is the model the first run pushed.
    assert "LatestServedModel done" in second
    assert f"baseline:      version 1 ({root}/serving_model/1)" in second
    assert f"pushed model:  {root}/serving_model/2" in second
    assert sorted(os.listdir(_stored(install, f"{root}/serving_model"))) == ["1", "2"]


def test_each_push_leaves_a_kserve_manifest_whose_tf_serving_loads_it(install):
    """Point 5: the manifest's runtimeVersion knows every op of the pushed SavedModel; KServe's default does not."""
    root = install["root"]
    for version in (1, 2):
        with open(_stored(install, f"{root}/serving_model/{version}/inferenceservice.yaml")) as f:
            manifest = yaml.safe_load(f)
        model = manifest["spec"]["predictor"]["model"]
        assert model["storageUri"] == "s3://" + root.split("://", 1)[1] + "/serving_model"
        assert manifest["metadata"]["annotations"]["signs-pipeline/version"] == str(version)
    ops = tf_serving.saved_model_ops(_stored(install, f"{root}/serving_model/1"))
    assert sorted(ops - tf_serving.release_ops(model["runtimeVersion"])) == []
    assert "DisableCopyOnRead" in ops - tf_serving.release_ops(tf_serving.KSERVE_DEFAULT_TF_SERVING)


def test_training_knobs_reach_fit(install):
    """The Trainer recorded the config it trained with: the compile flag's default and the run's values."""
    with open(os.path.join(install["work"], _run_dirs(install)[0], "Trainer", "executor_input.json")) as f:
        model_uri = json.load(f)["outputs"]["artifacts"]["model"]["artifacts"][0]["uri"]
    with open(os.path.join(_stored(install, model_uri), "history.json")) as f:
        history = json.load(f)
    config = history["config"]
    assert (config["learning_rate"], config["epochs"], config["batch_size"], config["augment"]) == (0.002, 1, 12, False)
    assert len(history["epochs"]) == 1


def test_tasks_got_what_the_2_17_backend_gives(install):
    """Point 6: inputs read back from ML Metadata (no type, MLMD ids, converted values), executor-logs-0."""
    root = install["root"]
    with open(os.path.join(install["work"], _run_dirs(install)[0], "Evaluator", "executor_input.json")) as f:
        executor_in = json.load(f)
    for artifacts in executor_in["inputs"]["artifacts"].values():
        artifact = artifacts["artifacts"][0]
        assert artifact["type"] == {"instanceSchema": ""} and artifact["uri"].startswith(root + "/")
        assert artifact["name"].isdigit() and artifact["metadata"]["display_name"]
        session = json.loads(artifact["metadata"]["store_session_info"])
        assert session["Params"]["endpoint"] == "seaweedfs.kubeflow:9000"
    assert executor_in["outputs"]["artifacts"]["executor-logs"]["artifacts"][0]["uri"].endswith("/executor-logs-0")
    assert executor_in["outputs"]["outputFile"].startswith("/minio/" + root.split("://", 1)[1] + "/")
    with open(os.path.join(install["work"], _run_dirs(install)[0], "ExampleGen", "executor_input.json")) as f:
        assert len(json.load(f)["inputs"]["parameterValues"]["data_fingerprint"]) == 16  # the data's, not ""
