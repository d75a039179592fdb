"""What a failed local run says: the data error behind an executor's failure, in one line; unique run ids."""

from components.data.sources import SignsDataError
from pipeline import run


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
    cause = run._root_cause(wrapped)  # pylint: disable=protected-access
    assert run.one_line(cause) == "/d/4/x.jpg: not a decodable image"
    other = _raised_inside(KeyError("k"))
    assert run.one_line(run._root_cause(other)) == "RuntimeError: Beam pipeline failed:"  # pylint: disable=protected-access


def test_run_ids_never_repeat():
    ids = {run.new_run_id() for _ in range(50)}
    assert len(ids) == 50


def test_a_disk_without_room_for_a_run_stops_it_before_it_starts(tmp_path, monkeypatch):
    """A disk that filled during the Trainer left ML Metadata unable to record the failure."""
    import collections  # pylint: disable=import-outside-toplevel
    import shutil  # pylint: disable=import-outside-toplevel
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2 ** 30, 9.5 * 2 ** 30, 2 ** 29))
    root = str(tmp_path / "not-yet" / "pipeline_output")
    assert run.disk_problem(root) == (f"{root}: 0.50 GiB free on its disk, and a run needs about 1 GiB "
                                      "(checkpoints, the model, the examples, ML Metadata); free some space, or "
                                      "pass another --pipeline-root")
    assert run.disk_problem("gs://bucket/root") == ""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2 ** 30, 0, 5 * 2 ** 30))
    assert run.disk_problem(root) == ""
