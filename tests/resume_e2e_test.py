"""A training run killed after its first checkpoint resumes from it when started again."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from components.report import run_summary
from tests.helpers import REPO, run_pipeline

pytestmark = pytest.mark.e2e
EPOCHS = 5


def _wait_for_checkpoint(proc, root, timeout=900):
    """Polls for the first epoch's checkpoint; returns its epoch number."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in glob.glob(os.path.join(root, "checkpoints", "*", "state.json")):
            try:
                return json.load(open(path))["epoch"]
            except (OSError, ValueError):
                pass  # being renamed into place
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before its first checkpoint:\n"
                        + proc.stdout.read()[-3000:])
        time.sleep(0.1)
    pytest.fail("no checkpoint appeared")


def test_killed_training_resumes_from_its_checkpoint(tiny_h5, tmp_path):
    root = str(tmp_path / "root")
    args = ["--data", tiny_h5, "--epochs", str(EPOCHS), "--batch-size", "12", "--min-accuracy", "0",
            "--early-stopping-patience", "0", "--pipeline-root", root]
    first = subprocess.Popen([sys.executable, "pipeline/local_runner.py", *args], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        killed_after = _wait_for_checkpoint(first, root)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert 1 <= killed_after < EPOCHS, "the kill came too late to test resuming"
    [ckpt] = glob.glob(os.path.join(root, "checkpoints", "*"))
    done = json.load(open(os.path.join(ckpt, "state.json")))["epoch"]  # may have moved on before the kill

    second = run_pipeline(*args)
    assert second.returncode == 0, second.stdout[-3000:]
    assert f"Resuming training from the checkpoint of epoch {done} in {ckpt}" in second.stdout
    store = run_summary.open_store(os.path.join(root, "metadata.sqlite"))
    [model] = [a for a in store.get_artifacts_by_type("Model") if "/Trainer/" in a.uri and a.state == 2]
    history = json.load(open(os.path.join(model.uri, "history.json")))
    assert history["resumed_from_epoch"] == done
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, EPOCHS + 1))
    assert not os.path.exists(ckpt)  # cleared after the export
