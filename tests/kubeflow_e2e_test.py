"""End to end: compile the Kubeflow package, then run every task of it here with run-local."""

import os
import subprocess
import sys

import pytest

from components import serving
from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def _runner(*args):
    proc = subprocess.run([sys.executable, "kubeflow/runner.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    sys.stdout.write(proc.stdout[-3000:])
    return proc


def test_compiled_package_runs_to_a_pushed_model(tiny_h5, tmp_path):
    root, package = str(tmp_path / "root"), str(tmp_path / "pipeline.yaml")
    compiled = _runner("compile", "--output", package, "--pipeline-root", root)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    assert "Trainer: 1 x nvidia.com/gpu" in compiled.stdout  # the same package a cluster gets

    out = _runner("run-local", package, "--param", f"data_root={tiny_h5}", "--param", "epochs=1",
                  "--param", "min_accuracy=0", "--work-dir", str(tmp_path / "work"))
    assert out.returncode == 0, out.stdout[-3000:]
    for task in ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
                 "DataChecks", "Trainer", "LatestServedModel", "Evaluator", "Pusher", "Review"):
        assert f"{task} done" in out.stdout
    assert "blessed:       YES" in out.stdout
    assert f"pushed model:  {os.path.join(root, 'serving_model', '1')}" in out.stdout
    assert serving.list_versions(os.path.join(root, "serving_model")) == [1]
    report = [l for l in out.stdout.splitlines() if l.startswith("review report: ")][0].split(": ", 1)[1]
    assert "BLESSED." in open(report).read()
