"""The wheel `kubeflow/Dockerfile` installs (`pip install --no-deps .`) holds every module and its data files."""

import shutil
import subprocess
import sys
import zipfile

from tests.helpers import REPO


def test_the_wheel_holds_every_module_and_the_report_template(tmp_path):
    # Built from a clean copy: setuptools' build/ folder would carry files of an earlier build.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "pipeline_output", "__pycache__", "kfp_local",
        ".pytest_cache", "test-artifacts"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [wheel] = tmp_path.glob("signs_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.j2"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    shipped = [p for p in tracked if p.split("/")[0] in ("common", "components", "pipeline", "trainer", "kubeflow")
               and not p.endswith("_test.py")]
    missing = [p for p in shipped if p not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert {"components/report/report.html.j2", "pipeline/rest_server/page.html.j2",
            "components/push/tf_ops/tf-2.16.ops"} <= names  # the templates, and the op sets tf_serving reads
