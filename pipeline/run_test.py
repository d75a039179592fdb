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
