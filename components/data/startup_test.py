"""oneDNN's kernels: asked for before TensorFlow is imported, by every entry point."""

import os
import subprocess
import sys

import pytest

from components.data import startup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_enable_sets_the_variable_when_unset(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as in a fresh process
    env = {}
    assert startup.enable(env)
    assert env == {startup.ENV: "1"}


@pytest.mark.parametrize("value, on", [("0", False), ("false", False), ("1", True), ("True", True)])
def test_a_users_own_setting_wins(value, on):
    env = {startup.ENV: value}
    assert startup.enable(env) is on
    assert env == {startup.ENV: value}


def test_too_late_once_tensorflow_is_imported(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    env = {}
    assert not startup.enable(env)
    assert env == {}
    assert "before TensorFlow was imported" in caplog.text


# Each entry point's main(), run with --help stopped after enable(): the variable must be set by then,
# and TensorFlow must not yet be imported (else the setting would not count).
ENTRY_POINTS = [
    ("pipeline.local_runner", ["--epochs", "1"]),
    ("pipeline.predict", ["x.png"]),
    ("pipeline.serve", []),
    ("kubeflow.runner", ["compile"]),
    ("kubeflow.entrypoint", ["--executor_class_path", "x", "--json_serialized_invocation_args", "{}"]),
    ("components.report.__main__", []),
]

PROBE = """
import os, sys
from components.data import startup
real = startup.enable
def probe(*a, **k):
    on = real(*a, **k)
    print("ENABLED", on, os.environ.get(startup.ENV), "tensorflow" in sys.modules, flush=True)
    raise SystemExit(0)
startup.enable = probe
import importlib
module = importlib.import_module(sys.argv[1])
module.main(sys.argv[2:])
print("NOT CALLED")
"""


@pytest.mark.parametrize("module, argv", ENTRY_POINTS, ids=[m for m, _ in ENTRY_POINTS])
def test_every_entry_point_asks_before_tensorflow_is_imported(module, argv):
    env = {k: v for k, v in os.environ.items() if k != startup.ENV}
    proc = subprocess.run([sys.executable, "-c", PROBE, module, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert "ENABLED True 1 False" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_tensorflow_runs_onednn_kernels_when_asked():
    code = ("from components.data import startup; startup.enable()\n"
            "from tensorflow.python.util import _pywrap_util_port\n"
            "print('ON' if _pywrap_util_port.IsMklEnabled() else 'OFF')")
    env = {k: v for k, v in os.environ.items() if k != startup.ENV}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.stdout.strip().endswith("ON"), proc.stderr[-2000:]
