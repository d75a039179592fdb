"""`python -m pipeline.predict`: what a user gets for each kind of bad input, in one line."""

import os
import subprocess
import sys

import pytest

from testsupport.saved_models import saved_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _predict(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def _push(serving_dir, version):
    saved_model(serving_dir / str(version))


def test_nothing_pushed_a_missing_version_or_file_and_a_non_image_are_one_line(tmp_path):
    serving_dir = tmp_path / "serving"
    out = _predict("x.jpg", "--serving-dir", str(serving_dir))
    assert (out.returncode, out.stdout) == (1, f"error: {serving_dir}: no pushed model; run the pipeline until a "
                                               f"model is blessed\n")
    _push(serving_dir, 1)
    out = _predict("x.jpg", "--serving-dir", str(serving_dir), "--version", "7")
    assert (out.returncode, out.stdout) == (1, f"error: {serving_dir}: no version 7; pushed versions are [1]\n")
    out = _predict(str(tmp_path / "missing.jpg"), "--serving-dir", str(serving_dir))
    assert (out.returncode, out.stdout) == (2, f"error: {tmp_path / 'missing.jpg'}: unreadable (No such file or "
                                               f"directory)\n")
    (tmp_path / "notes.jpg").write_text("not an image")
    out = _predict(str(tmp_path / "notes.jpg"), "--serving-dir", str(serving_dir))
    assert (out.returncode, out.stdout) == (2, f"error: {tmp_path / 'notes.jpg'}: not a JPEG or PNG image\n")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("special", ["dev-zero", "fifo"])
def test_a_device_or_fifo_is_refused_without_reading_it(tmp_path, special):
    """`predict /dev/zero` read 4 GB in 24 s; a FIFO blocked."""
    serving_dir = tmp_path / "serving"
    _push(serving_dir, 1)
    path = tmp_path / "hand.jpg"
    if special == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    out = _predict(str(path), "--serving-dir", str(serving_dir))
    kind = "fifo" if special == "fifo" else "device"
    assert (out.returncode, out.stdout) == (2, f"error: {path}: a {kind}, not a regular file; not read\n")


def test_a_version_that_cannot_be_served_is_named_and_never_used(tmp_path):
    """A garbage saved_model.pb in the newest version was a traceback."""
    serving_dir = tmp_path / "serving"
    _push(serving_dir, 1)
    (serving_dir / "2").mkdir()
    (serving_dir / "2" / "saved_model.pb").write_bytes(b"\xff" * 64)
    out = _predict("x.jpg", "--serving-dir", str(serving_dir), "--version", "2")
    assert (out.returncode, out.stdout) == (
        1, f"error: version 2 ({serving_dir}/2) cannot be served: saved_model.pb is not a SavedModel\n")
    out = _predict(str(tmp_path / "missing.jpg"), "--serving-dir", str(serving_dir))  # the newest that loads: 1
    assert out.stderr.splitlines()[-1] == (f"warning: version 2 ({serving_dir}/2) cannot be served: saved_model.pb "
                                           f"is not a SavedModel; passed over")
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.mark.parametrize("endpoint, said", [
    ("http://127.0.0.1:9", "error: minio://mlpipeline/s at http://127.0.0.1:9: cannot connect"),
    ("http://signs:s3cr3t-Pa55@127.0.0.1:9", "error: the store endpoint http://<user info>@127.0.0.1:9 carries user:password@; "
                                             "give the keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a "
                                             "secret) instead"),
])
def test_an_unreachable_store_is_one_line_without_its_password(endpoint, said):
    """An 18-line traceback, with the endpoint's password in it."""
    env = dict(os.environ, SIGNS_MINIO_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="also-secret")
    out = subprocess.run([sys.executable, "-m", "pipeline.predict", "x.jpg", "--serving-dir", "minio://mlpipeline/s"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert (out.returncode, out.stdout) == (1, said + "\n") and "Traceback" not in out.stderr
    assert "s3cr3t" not in out.stdout + out.stderr and "also-secret" not in out.stdout + out.stderr
