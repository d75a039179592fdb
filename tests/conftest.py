"""Shared fixtures: tiny real data sets and whole-pipeline runs, made once per test session."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from components import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PHOTOS = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")


def run_pipeline(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs `python pipeline/local_runner.py ARGS` as a user would; returns the finished process."""
    proc = subprocess.run([sys.executable, "pipeline/local_runner.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    return proc


@pytest.fixture(scope="session")
def shared_photos():
    """The shared sign-language-digits photos, or a skip saying why they are missing."""
    if not os.path.isdir(SHARED_PHOTOS):
        pytest.skip(f"real photos not found at {os.path.abspath(SHARED_PHOTOS)} (../shared is absent)")
    return os.path.abspath(SHARED_PHOTOS)


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory):
    """A SIGNS-format h5 pair of 36 train and 12 test images."""
    return synthetic.write_signs_h5(str(tmp_path_factory.mktemp("tiny_h5")), n_train=36, n_test=12, seed=5)


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()
