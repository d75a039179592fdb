"""`python -m pipeline.predict`: what a user gets for each kind of bad input, in one line."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _predict(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def _push(serving_dir, version):
    (serving_dir / str(version)).mkdir(parents=True)
    (serving_dir / str(version) / "push_info.json").write_text("{}")
    (serving_dir / str(version) / "saved_model.pb").write_bytes(b"")


def test_nothing_pushed_a_missing_version_or_file_and_a_non_image_are_one_line(tmp_path):
    serving_dir = tmp_path / "serving"
    out = _predict("x.jpg", "--serving-dir", str(serving_dir))
    assert (out.returncode, out.stdout) == (1, f"error: {serving_dir}: no pushed model; run the pipeline until a "
                                               f"model is blessed\n")
    _push(serving_dir, 1)
    out = _predict("x.jpg", "--serving-dir", str(serving_dir), "--version", "7")
    assert (out.returncode, out.stdout) == (1, f"error: {serving_dir}: no version 7; pushed versions are [1]\n")
    out = _predict(str(tmp_path / "missing.jpg"), "--serving-dir", str(serving_dir))
    assert (out.returncode, out.stdout) == (1, f"error: {tmp_path / 'missing.jpg'}: No such file or directory\n")
    (tmp_path / "notes.jpg").write_text("not an image")
    out = _predict(str(tmp_path / "notes.jpg"), "--serving-dir", str(serving_dir))
    assert (out.returncode, out.stdout) == (1, f"error: {tmp_path / 'notes.jpg'}: not a JPEG or PNG image\n")
    assert "Traceback" not in out.stderr
