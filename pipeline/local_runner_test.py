"""What a failed local run says: the data error behind an executor's failure, in one line; unique run ids."""

import collections
import os
import shutil
import subprocess
import sys
import time

from ml_metadata.proto import metadata_store_pb2

from components.data.sources import SignsDataError
from components.report import run_summary
from pipeline import local_runner
from trainer import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raised_inside(error):
    """`error` as it reaches the runner: wrapped by the executor and Beam, the cause chained."""
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Beam pipeline failed:\n  long trace ...") from inner
    except RuntimeError as outer:
        return outer


def test_the_data_error_behind_a_failure_is_what_the_user_reads():
    wrapped = _raised_inside(SignsDataError("/d/4/x.jpg: not a decodable image\n(details)"))
    cause = local_runner._root_cause(wrapped)  # pylint: disable=protected-access
    assert local_runner.one_line(cause) == "/d/4/x.jpg: not a decodable image"
    other = _raised_inside(KeyError("k"))
    assert local_runner.one_line(local_runner._root_cause(other)) == "RuntimeError: Beam pipeline failed:"  # pylint: disable=protected-access


def test_run_ids_never_repeat():
    ids = {local_runner.new_run_id() for _ in range(50)}
    assert len(ids) == 50


def test_a_disk_without_room_for_a_run_stops_it_before_it_starts(tmp_path, monkeypatch):
    """A disk that filled during the Trainer left ML Metadata unable to record the failure."""
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2 ** 30, 9.5 * 2 ** 30, 2 ** 29))
    root = str(tmp_path / "not-yet" / "pipeline_output")
    assert local_runner.disk_problem(root) == (f"{root}: 0.50 GiB free on its disk, and a run needs about 1 GiB "
                                      "(checkpoints, the model, the examples, ML Metadata); free some space, or "
                                      "pass another --pipeline-root")
    assert local_runner.disk_problem("gs://bucket/root") == ""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2 ** 30, 0, 5 * 2 ** 30))
    assert local_runner.disk_problem(root) == ""


def test_a_run_that_raised_shows_nothing_running(monkeypatch):
    """A full disk stopped the Trainer, ML Metadata could not record it ("database or disk is full"),
    and the summary said "Trainer running" after the run had ended."""

    def component(name, state, started):
        return run_summary.ComponentRun(name, state, 0.0, {}, metadata_store_pb2.Execution(create_time_since_epoch=started))
    monkeypatch.setattr(time, "time", lambda: 1000.0)
    report = run_summary.RunReport("r", [component("DataChecks", "complete", 900_000), component("Trainer", "running", 940_000)])
    local_runner._ended(report)  # pylint: disable=protected-access
    assert [(c.name, c.state, c.seconds) for c in report.components] == [
        ("DataChecks", "complete", 0.0), ("Trainer", "failed", 60.0)]
    assert "Trainer           failed" in run_summary.summary_text(report, 100.0, "data", "/root")


def test_the_trainers_checkpoint_error_is_what_a_full_disk_run_reads():
    """A full disk in the Trainer: the run's error line is the CheckpointError naming the file,
    not the executor's wrapper."""
    wrapped = _raised_inside(checkpoints.CheckpointError("/root/checkpoints/k/best.weights.h5: the checkpoint could not "
                                                         "be written (No space left on device); 0 bytes free there"))
    assert local_runner.one_line(local_runner._root_cause(wrapped)) == (  # pylint: disable=protected-access
        "CheckpointError: /root/checkpoints/k/best.weights.h5: the checkpoint could not be written (No space left "
        "on device); 0 bytes free there")


def test_classes_absent_from_a_folder_source_are_refused_before_tfx_is_imported(tmp_path):
    for label in ("0", "1"):
        os.makedirs(tmp_path / "photos" / label)
    argv = ["--data", str(tmp_path / "photos"), "--classes", "0,1,11", "--pipeline-root", str(tmp_path / "r")]
    code = ("import sys\nfrom pipeline import local_runner\n"
            f"code = local_runner.main({argv!r})\n"
            "print('HEAVY', [m for m in ('tfx', 'tensorflow') if m in sys.modules])\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert f"error: --classes: {tmp_path / 'photos'} has no folder for label 11 (its class folders: 0, 1)" in done.stdout
    assert "HEAVY []" in done.stdout
