"""Helpers for the tests: run the runner as a user would, encode images."""

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PHOTOS = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")


def run_pipeline(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs `python pipeline/local_runner.py ARGS` as a user would; returns the finished process."""
    proc = subprocess.run([sys.executable, "pipeline/local_runner.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    return proc


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()
