"""The run summary: read from a small artifact tree as ML Metadata records it, and each of its branches."""

import json
import os
import subprocess
import sys

import pytest
from ml_metadata.proto import metadata_store_pb2

from components.report import run_summary


def _artifact(uri, **props):
    artifact = metadata_store_pb2.Artifact(uri=str(uri))
    for key, value in props.items():
        if isinstance(value, str):
            artifact.custom_properties[key].string_value = value
        else:
            artifact.custom_properties[key].int_value = int(value)
    return artifact


def _run(name, state="complete", seconds=3.0, **outputs):
    return run_summary.ComponentRun(name, state, seconds, outputs, metadata_store_pb2.Execution())


@pytest.fixture
def tree(tmp_path):
    """DataChecks' findings, the Trainer's history, the Review's shifted accuracy, as the components write them."""
    findings = tmp_path / "DataChecks" / "findings"
    findings.mkdir(parents=True)
    (findings / "findings.json").write_text(json.dumps({
        "errors": [], "warnings": ["class 5 has 2 train examples"],
        "splits": {"train": {"examples": 36, "classes": {"0": 6}}, "eval": {"examples": 12, "classes": {"0": 2}}},
        "duplicates": {"within": {"train": 0, "eval": 1}, "across_splits": 2}}))
    model = tmp_path / "Trainer" / "model"
    model.mkdir(parents=True)
    (model / "history.json").write_text(json.dumps({"config": {"epochs": 3}, "epochs": [
        {"epoch": 1, "seconds": 10.0, "val_accuracy": 0.5}, {"epoch": 2, "seconds": 10.0, "val_accuracy": 0.6}]}))
    review = tmp_path / "Review" / "report"
    review.mkdir(parents=True)
    (review / "shifted_accuracy.json").write_text(json.dumps({"evaluated": 12, "accuracy": {"as they are": 0.5,
                                                                                            "background": 0.25}}))
    return tmp_path, findings, model, review


def test_add_results_reads_what_the_components_wrote(tree):
    _, findings, model, review = tree
    report = run_summary.RunReport("r1", [
        _run("DataChecks", **{"components.DataFindings": _artifact(findings)}),
        _run("Trainer", **{"Model": _artifact(model)}),
        _run("LatestServedModel", **{"Model": _artifact("/b", served_version=3, served_from="/s/3")}),
        _run("Pusher", **{"PushedModel": _artifact("/p", pushed=1, pushed_destination="/s/4")}),
        _run("Review", **{"components.ReviewReport": _artifact(review, report_path="/r/report.html")})])
    run_summary.add_results(report)
    assert report.findings["duplicates"]["across_splits"] == 2 and report.findings_path == str(findings / "findings.json")
    assert report.training and "2" in report.training  # the epochs it trained
    assert report.baseline == "version 3 (/s/3)" and report.pushed_to == "/s/4"
    assert report.report_path == "/r/report.html" and report.shifted["evaluated"] == 12
    text = run_summary.summary_text(report, 42, "data/x", "/root")
    assert "  duplicates:  0 within train, 1 within eval, 2 across splits" in text.splitlines()
    assert "  warning: class 5 has 2 train examples" in text.splitlines()
    assert "shifted eval:  as they are 0.50, background 0.25 (12 eval images; see the review report)" in text


@pytest.mark.parametrize("pusher, blessed, line", [
    ({"pushed": 1, "pushed_destination": "/s/2"}, True, "pushed model:  /s/2"),
    ({"pushed": 0, "already_serving_version": 1}, True, "pushed model:  none: this model already serves as version 1"),
    ({"pushed": 0, "not_pushed_reason": "version 2 was pushed meanwhile"}, True,
     "pushed model:  none: version 2 was pushed meanwhile"),
    ({"pushed": 0}, False, "pushed model:  none (the model was not blessed; the serving directory is unchanged)"),
])
def test_each_push_outcome_has_its_own_line(pusher, blessed, line):
    report = run_summary.RunReport("r1", [_run("Pusher", **{"PushedModel": _artifact("/p", **pusher)})])
    run_summary.add_results(report)
    report.blessed = blessed
    lines = run_summary.summary_text(report, 1, "d", "/root").splitlines()
    assert [l for l in lines if l.startswith("pushed model:")] == [line]


def test_cached_and_missing_components_are_said():
    report = run_summary.RunReport("r2", [_run("ExampleGen", "cached"), _run("Trainer", "cached"),
                                   _run("LatestServedModel", seconds=2.0), _run("Evaluator", "failed", 5.0)],
                            expected=("ExampleGen", "Trainer", "LatestServedModel", "Evaluator", "Pusher"))
    lines = run_summary.summary_text(report, 9, "d", "/root").splitlines()
    assert "  ExampleGen        cached            -" in lines and "  Evaluator         failed          5 s" in lines
    assert "  Pusher            not run           -" in lines
    assert "  reused from cache (inputs unchanged): ExampleGen, Trainer" in lines
    assert "  LatestServedModel re-ran because the serving directory changed since the last run" in lines
    assert not [l for l in lines if l.startswith("pushed model:")]  # nothing was decided


def test_no_run_is_said():
    assert run_summary.summary_text(None, 0, "d", "/root").splitlines()[-1] == "no run found in ML Metadata"


# -- A damaged ML Metadata store is one line, from the runner and the review -------------------------

def _real_store(path):
    """An ML Metadata store on SQLite as the local runner makes it (read-write, with its tables)."""
    from ml_metadata.metadata_store import metadata_store  # pylint: disable=import-outside-toplevel
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    metadata_store.MetadataStore(config)
    return str(path)


@pytest.mark.parametrize("damage, problem", [
    ("garbage", "not a readable ML Metadata store (file is not a database)"),
    ("truncated", "not a readable ML Metadata store (database disk image is malformed)"),
    ("directory", "a directory, not an ML Metadata store"),
    ("other sqlite", "an SQLite database, but not ML Metadata's"),
])
def test_a_damaged_metadata_store_is_named_with_what_to_do(tmp_path, damage, problem):
    path = _real_store(tmp_path / "metadata.sqlite")
    assert run_summary.metadata_problem(path) is None
    assert run_summary.metadata_problem(str(tmp_path / "absent.sqlite")) is None  # made on first use
    if damage == "garbage":
        (tmp_path / "metadata.sqlite").write_bytes(b"\x13" * 8192)
    elif damage == "truncated":
        data = (tmp_path / "metadata.sqlite").read_bytes()
        (tmp_path / "metadata.sqlite").write_bytes(data[:len(data) // 3])
    elif damage == "directory":
        (tmp_path / "metadata.sqlite").unlink()
        (tmp_path / "metadata.sqlite").mkdir()
    else:
        import sqlite3  # pylint: disable=import-outside-toplevel
        (tmp_path / "metadata.sqlite").unlink()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text)")
    assert run_summary.metadata_problem(path) == f"{path}: {problem}; {run_summary.MOVE_ASIDE}"


@pytest.mark.parametrize("command", ["review", "runner"])
def test_the_runner_and_the_review_stop_in_one_line_on_a_damaged_store(tmp_path, command):
    """Both were tracebacks."""
    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    root = tmp_path / "root"
    root.mkdir()
    (root / "metadata.sqlite").write_bytes(b"\x13" * 8192)
    if command == "review":
        argv = ["-m", "components.report", "--pipeline-root", str(root)]
    else:
        data = synthetic.write_signs_h5(str(tmp_path / "data"), n_train=6, n_test=6)
        argv = ["pipeline/local_runner.py", "--data", data, "--pipeline-root", str(root)]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, *argv], cwd=repo, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == (f"error: {root}/metadata.sqlite: not a readable ML Metadata store (file is "
                                           f"not a database); {run_summary.MOVE_ASIDE}")


def test_the_shifted_line_names_the_headline_figures_with_their_intervals():
    shifted = {"evaluated": 120, "accuracy": {"as they are": 0.99, "tilt": 0.7, "phone": 0.3, "mean of the five": 0.55,
                                              "all": 0.5},
               "interval": {"as they are": [0.95, 1.0], "tilt": [0.61, 0.78], "phone": [0.22, 0.39],
                            "mean of the five": [0.46, 0.64], "all": [0.41, 0.59]}}
    assert run_summary.shifted_line(shifted) == (
        "shifted eval:  as they are 0.99 (0.95-1.00), phone proxy 0.55 (0.46-0.64), pale-wall proxy 0.50 "
        "(0.41-0.59) (120 eval images, 95 % intervals; every shift in the review report)")


def test_a_file_names_escape_sequences_do_not_reach_the_terminal():
    """A file named ESC[2J ESC[31m... cleared the user's terminal from the run summary."""
    report = run_summary.RunReport("r5", [], not_pushed_reason="/data/\x1b[2J\x1b[31mhand.jpg: not a regular file")
    text = run_summary.summary_text(report, 1, "a folder /data/\x1b]0;title\x07", "/root")
    assert "\x1b" not in text and "\x07" not in text
    assert "/data/\\x1b[2J\\x1b[31mhand.jpg: not a regular file" in text and "\\x1b]0;title\\x07" in text


# -- A model that was not blessed: what to run next, for each reason ---------------------------------

def _not_blessed(failed, history, bars=None):
    report = run_summary.RunReport("r3", [], blessed=False, failed=failed, history=history,
                            bars=bars or {"value": 0.9, "change": 0.0})
    lines = run_summary.summary_text(report, 1, "d", "/root").splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("next:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
    return " ".join(l.split(":", 1)[1].strip() if i == start else l.strip()
                    for i, l in enumerate(lines[start:end], start))


def test_a_run_stopped_for_time_is_told_the_flag_that_gives_more():
    text = _not_blessed(["value"], {"config": {"epochs": 30, "time_budget_minutes": 5}, "stopped_for_time": True})
    assert "Training stopped for time (5-minute budget): give it more, e.g. --time-budget-minutes 10" in text
    assert "--min-accuracy 0.9" in text and "reuses this run's results from the cache" in text
    assert "--min-improvement" not in text


def test_a_run_that_trained_all_its_epochs_is_told_to_ask_for_more():
    text = _not_blessed(["value"], {"config": {"epochs": 4, "time_budget_minutes": 0}})
    assert "Training ran all 4 epochs: ask for more, e.g. --epochs 8" in text


def test_a_run_stopped_early_is_not_told_to_train_longer():
    text = _not_blessed(["value"], {"config": {"epochs": 30}, "stopped_early": True})
    assert "More epochs will not help" in text and "--epochs" not in text


def test_a_model_that_lost_to_the_serving_one_is_told_what_decides_that():
    text = _not_blessed(["change"], {"config": {"epochs": 4}}, bars={"value": 0.9, "change": 0.01})
    assert "It lost to the model now serving" in text and "--min-improvement 0.01 decides" in text
    assert "Training ran all" not in text and "--epochs 8" not in text


def test_a_blessed_run_has_no_next_line():
    report = run_summary.RunReport("r4", [], blessed=True)
    assert not [l for l in run_summary.summary_text(report, 1, "d", "/root").splitlines() if l.startswith("next:")]
