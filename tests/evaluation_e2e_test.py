"""End to end: a good model, then a worse one judged against it; the review page; predict; review CLI."""

import glob
import html.parser
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO, SHARED_PHOTOS, run_pipeline, write_separable_h5

pytestmark = pytest.mark.e2e
ARTIFACTS = os.path.join(REPO, "test-artifacts")


@pytest.fixture(scope="session")
def good_then_worse(tmp_path_factory):
    """Run 1 trains 15 epochs on colour-coded classes (learnable in seconds) and is pushed;
    run 2 exports an untrained model (--epochs 0) and is judged against run 1's."""
    data = write_separable_h5(str(tmp_path_factory.mktemp("separable")), n_train=72, n_test=24)
    root = str(tmp_path_factory.mktemp("eval_root"))
    common = ["--data", data, "--batch-size", "12", "--min-accuracy", "0", "--pipeline-root", root]
    good = run_pipeline(*common, "--epochs", "15")
    worse = run_pipeline(*common, "--epochs", "0")
    return root, good, worse


def _report_path(proc):
    lines = [l for l in proc.stdout.splitlines() if l.startswith("review report: ")]
    assert lines, proc.stdout[-2000:]
    return lines[-1].split(": ", 1)[1]


def test_worse_model_is_not_blessed_and_not_pushed(good_then_worse):
    root, good, worse = good_then_worse
    assert good.returncode == 0 and "blessed:       YES" in good.stdout, good.stdout[-3000:]
    assert "pushed model:  " + os.path.join(root, "serving_model", "1") in good.stdout
    assert worse.returncode == 0, worse.stdout[-3000:]
    assert "blessed:       NO" in worse.stdout
    assert "It lost to the serving model (version 1)" in worse.stdout
    assert sorted(os.listdir(os.path.join(root, "serving_model"))) == ["1"]
    page = open(_report_path(worse)).read()
    assert "NOT BLESSED." in page and "It lost to the serving model (version 1)" in page
    assert "baseline (serving)" in page


class _Resources(html.parser.HTMLParser):
    """Collects every resource a page would load (src, href, srcset)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset") and value:
                self.urls.append(value)


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return path


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


def test_report_renders_in_headless_chromium(good_then_worse, tmp_path):
    _, _, worse = good_then_worse
    path = _report_path(worse)
    page = open(path).read()
    parser = _Resources()
    parser.feed(page)
    assert parser.urls and all(u.startswith("data:") for u in parser.urls), parser.urls
    assert "<script" not in page  # works offline: nothing to fetch or run

    os.makedirs(ARTIFACTS, exist_ok=True)
    screenshot = os.path.join(ARTIFACTS, "review_report.png")
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    shot = subprocess.run([_chromium(), *flags, "--window-size=1200,2600", f"--screenshot={screenshot}",
                           f"file://{path}"], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert os.path.getsize(screenshot) > 50_000  # a real rendering, not a blank page
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", f"file://{path}"],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0
    for log in (shot.stderr, dom.stderr):
        assert "Failed to load resource" not in log and "ERR_FILE_NOT_FOUND" not in log
    rendered = dom.stdout
    assert 'id="decision"' in rendered and "NOT BLESSED." in rendered
    assert 'alt="confusion matrix"' in rendered and 'alt="per-class precision and recall"' in rendered
    assert 'alt="training curves"' not in rendered  # --epochs 0 has no curves; the page says so
    assert "No training epochs" in rendered


def test_first_report_has_curves_and_no_baseline(good_then_worse):
    _, good, _ = good_then_worse
    page = open(_report_path(good)).read()
    assert 'alt="training curves"' in page and "BLESSED." in page
    assert "No model was serving yet" in page


def _predict(root, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.predict", "--pipeline-root", root, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_predict_classifies_a_photo(good_then_worse, tmp_path):
    root, _, _ = good_then_worse
    photos = sorted(glob.glob(os.path.join(SHARED_PHOTOS, "3", "*.JPG")))
    if not photos:
        from PIL import Image  # pylint: disable=import-outside-toplevel
        photos = [str(tmp_path / "hand.jpg")]
        Image.new("RGB", (100, 100), (220, 220, 40)).save(photos[0])
    out = _predict(root, photos[0])
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert out.stdout.startswith(f"{photos[0]}: class ") and "model v1" in out.stdout
    as_json = json.loads(_predict(root, "--json", photos[0]).stdout.strip().splitlines()[-1])
    assert as_json["class"] in range(6) and len(as_json["probabilities"]) == 6
    assert abs(sum(as_json["probabilities"]) - 1) < 1e-3 and as_json["model_version"] == 1


def test_predict_on_a_text_file_is_one_error_line(good_then_worse, tmp_path):
    root, _, _ = good_then_worse
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    out = _predict(root, str(text))
    assert out.returncode != 0
    assert out.stdout.strip() == f"error: {text}: not a JPEG or PNG image"
    assert "Traceback" not in out.stderr


def test_review_lists_runs_and_prints_the_latest_report(good_then_worse):
    root, _, worse = good_then_worse
    out = subprocess.run([sys.executable, "-m", "components.report", "--pipeline-root", root],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    rows = [l for l in out.stdout.splitlines() if l[:1] in (" ", "*") and "-" in l[:12]]
    assert len(rows) == 2
    assert "yes" in rows[0] and "v1" in rows[0] and "no" in rows[1] and rows[1].startswith("*")
    assert out.stdout.strip().splitlines()[-1] == _report_path(worse)


def _bomb(path):
    """A PNG of a few KB that declares 12000 x 12000 pixels (144 megapixels)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    Image.new("1", (12000, 12000)).save(path)
    return str(path)


def test_predict_refuses_a_decompression_bomb_before_decoding(good_then_worse, tmp_path):
    root, _, _ = good_then_worse
    bomb = _bomb(tmp_path / "bomb.png")
    out = _predict(root, bomb)
    assert out.returncode == 1
    assert out.stdout.strip() == (f"error: {bomb}: declares 12000x12000 pixels, more than the limit of 40000000 "
                                  f"(--max-image-pixels); not decoded")


def test_the_served_signature_refuses_a_bomb_and_serves_a_photo(good_then_worse, tmp_path):
    """What TF Serving or KServe would run: the pushed SavedModel's raw-bytes signature."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    root, _, _ = good_then_worse
    classify = tf.saved_model.load(os.path.join(root, "serving_model", "1")).signatures["serve_image_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares more pixels than the limit of 40000000"):
        classify(image_bytes=tf.constant([open(_bomb(tmp_path / "bomb.png"), "rb").read()]))
    for fmt in ("PNG", "JPEG", "GIF", "BMP"):
        path = tmp_path / f"hand.{fmt.lower()}"
        Image.new("RGB", (300, 200), (200, 180, 160)).save(path, format=fmt)
        out = classify(image_bytes=tf.constant([path.read_bytes()]))
        assert out["probabilities"].shape == (1, 6), fmt
