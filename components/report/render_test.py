"""The review page's context, built from facts as review.gather collects them (no TFMA, no model)."""

import io

import numpy as np
import pytest
from PIL import Image

from components.report import render
from components.report.results import ACCURACY, BASELINE, CANDIDATE


def _png():
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()


def _facts(baseline=True, blessed=True, failures=(), pushed=None):
    accuracy = {CANDIDATE: 0.75, BASELINE: 0.5, "diff": 0.25} if baseline else {CANDIDATE: 0.75}
    thresholds = [{"metric": ACCURACY, "kind": "value", "bound": 0.5, "text": ">= 0.5"},
                  {"metric": ACCURACY, "kind": "change", "bound": 0.0, "text": "candidate - baseline >= 0"}]
    per_class = {c: {"precision": 0.5, "recall": 0.5, "examples": 2, "baseline_precision": 0.4 if baseline else None,
                     "baseline_recall": None} for c in range(2)}
    return {
        "evaluation": {"metrics": {ACCURACY: accuracy}, "per_class": per_class, "confusion": [[2, 0], [1, 1]],
                       "thresholds": thresholds, "failures": list(failures), "validation_ok": not failures,
                       "has_baseline": baseline},
        "blessed": blessed, "baseline_version": 1 if baseline else None,
        "pushed": pushed or {"pushed": True, "version": 2, "destination": "/s/2"},
        "history": {"config": {"epochs": 2}, "epochs": [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
                                                          "val_accuracy": 0.5, "learning_rate": 0.001, "seconds": 3}]},
        "misclassified": {"evaluated": 4, "examples": [{"png": _png(), "label": 1, "predicted": 0, "source": "a.h5[1]",
                                                        "confidence": 0.6}]},
        "shifted": {"evaluated": 4, "rows": [{"name": "as they are", "accuracy": 0.75, "sample": _png()}]},
        "findings": {"splits": {"train": {"examples": 8, "classes": {"0": 4, "1": 4}},
                                "eval": {"examples": 4, "classes": {"1": 4}}},
                     "duplicates": {"within": {}, "across_splits": 0}, "warnings": ["w"]},
        "paths": {"model": "/m"},
    }


def test_a_blessed_pushed_run_against_a_baseline():
    page = render.page_context(_facts())
    assert page["decision"][0] == "BLESSED." and page["decision"][-1] == "Pushed as version 2: /s/2"
    [accuracy] = page["metrics"]
    assert (accuracy["candidate"], accuracy["baseline"], accuracy["diff"]) == (0.75, 0.5, 0.25)
    assert [c["status"] for c in accuracy["checks"]] == ["pass", "pass"]
    assert page["data"]["classes"] == [0, 1] and [s["counts"] for s in page["data"]["splits"]] == [[4, 4], [0, 4]]
    assert page["confusion"]["caption"].startswith("4 eval examples, 3 on the diagonal")
    assert page["per_class"]["has_baseline"] and page["misclassified"]["examples"][0]["src"].startswith("data:image/png")
    assert page["shifted"]["rows"][0]["src"].startswith("data:image/png") and page["training"]["curves"]


@pytest.mark.parametrize("facts, status, last", [
    (_facts(baseline=False), ["pass", "skipped (no baseline)"], "Pushed as version 2: /s/2"),
    (_facts(blessed=False, failures=[{"metric": ACCURACY, "kind": "change", "value": -0.1, "text": "t"}],
            pushed={"pushed": False}), ["pass", "FAIL"], "Not pushed: the serving directory is unchanged."),
    (_facts(pushed={"pushed": False, "already_serving_version": 1}), ["pass", "pass"],
     "Already serving as version 1; not pushed again."),
])
def test_each_outcome_reads_as_it_happened(facts, status, last):
    page = render.page_context(facts)
    assert [c["status"] for c in page["metrics"][0]["checks"]] == status
    assert page["decision"][-1] == last


def test_an_empty_shift_and_no_findings_leave_their_sections_out():
    facts = _facts()
    facts["shifted"], facts["findings"] = {"evaluated": 0, "rows": []}, None
    page = render.page_context(facts)
    assert page["shifted"] is None and page["data"] is None
    page = render.render(dict(facts, paths={"model": "/m/<script>x</script>"}))
    assert "<script>x" not in page and "&lt;script&gt;x" in page  # the template escapes what it is given


def test_a_file_names_escape_sequences_are_shown_not_written_raw():
    """A file named ESC[2J ESC[31m... was written raw into report.html."""
    facts = dict(_facts(), findings=None)
    page = render.render(dict(facts, paths=dict(facts["paths"], model="/m/\x1b[2J\x1b[31mred\u202egpj.exe")))
    assert "\x1b" not in page and "\u202e" not in page
    assert "/m/\\x1b[2J\\x1b[31mred\\u202egpj.exe" in page
