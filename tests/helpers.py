"""Helpers for the tests: run the runner as a user would, encode images."""

import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PHOTOS = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")


def run_pipeline(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs `python pipeline/local_runner.py ARGS` as a user would; returns the finished process."""
    proc = subprocess.run([sys.executable, "pipeline/local_runner.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    return proc


def write_separable_h5(directory: str, n_train: int, n_test: int) -> str:
    """A SIGNS-format h5 pair a few training steps can learn: each class has its own colour.

    Used where a test needs a model that is reliably better than an untrained one.
    """
    import h5py  # pylint: disable=import-outside-toplevel

    palette = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40], [220, 40, 220], [40, 220, 220]])
    rng = np.random.default_rng(0)
    os.makedirs(directory, exist_ok=True)
    for prefix, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n, dtype=np.int64) % 6
        x = palette[y][:, None, None, :] + rng.normal(0, 20, (n, 64, 64, 3))
        with h5py.File(os.path.join(directory, f"{prefix}_signs.h5"), "w") as f:
            f.create_dataset(f"{prefix}_set_x", data=np.clip(x, 0, 255).astype(np.uint8))
            f.create_dataset(f"{prefix}_set_y", data=y)
            f.create_dataset("list_classes", data=np.arange(6, dtype=np.int64))
    return directory
