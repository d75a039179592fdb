"""Tests of run-local's own parts: bad input in one line, and KFP's cache key."""

import os
import subprocess
import sys

import pytest

from kubeflow import compile as kfp_compile
from kubeflow.local_run import Cache, executor_input

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def spec():
    return kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs:test"))


def test_an_unreachable_store_is_one_line_without_the_secret(spec, tmp_path):
    package = kfp_compile.write(spec, str(tmp_path / "pipeline.yaml"))
    env = dict(os.environ, SIGNS_MINIO_ENDPOINT="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="key-id",
               AWS_SECRET_ACCESS_KEY="SECRET-VALUE-123")
    out = subprocess.run([sys.executable, "kubeflow/runner.py", "run-local", package, "--work-dir", str(tmp_path / "w")],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1
    assert out.stdout.strip() == "error: minio://mlpipeline/v2/artifacts/data at http://127.0.0.1:9: cannot connect"
    assert "SECRET-VALUE-123" not in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_compile_refuses_a_local_root_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "kubeflow/runner.py", "compile", "--pipeline-root", str(tmp_path),
                          "--output", str(tmp_path / "p.yaml")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and not os.path.exists(tmp_path / "p.yaml")
    assert out.stdout.strip().startswith(f"error: --pipeline-root '{tmp_path}': the KFP backend takes only gs://")


def test_the_cache_key_follows_the_data_fingerprint(spec, tmp_path):
    tasks = spec["root"]["dag"]["tasks"]
    component = spec["components"][tasks["ExampleGen"]["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    params = kfp_compile.parameter_values(spec, {})

    def key(fingerprint):
        task_root = f"minio://mlpipeline/v2/artifacts/signs/run-{fingerprint}/ExampleGen/salt"
        ein = executor_input("ExampleGen", tasks["ExampleGen"], component, dict(params, data_fingerprint=fingerprint),
                             {}, task_root, str(tmp_path))
        return Cache.key(container, ein)

    assert key("aaaa") == key("aaaa")  # output URIs differ per run; the key does not hold them
    assert key("aaaa") != key("bbbb")
