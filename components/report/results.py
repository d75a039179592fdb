"""Reads a TFMA evaluation (metrics, plots, validation) into plain Python for reports and summaries."""

import json
import os
from typing import Any, Dict, List

CANDIDATE, BASELINE = "candidate", "baseline"
ACCURACY = "sparse_categorical_accuracy"
# Metric names as shown to people, in display order.
DISPLAY = {
    ACCURACY: "accuracy",
    "sparse_categorical_crossentropy": "loss (cross-entropy)",
    "expected_calibration_error": "calibration error (ECE)",
    "example_count": "eval examples",
}
LOWER_IS_BETTER = {"sparse_categorical_crossentropy", "expected_calibration_error"}


def _value(kv) -> Any:
    return kv.value.double_value.value if kv.value.HasField("double_value") else None


def _thresholds(uri: str) -> List[Dict[str, Any]]:
    """The thresholds in the evaluation's eval_config.json, as {metric, kind, bound}."""
    path = os.path.join(uri, "eval_config.json")
    if not os.path.exists(path):
        return []
    config = json.load(open(path)).get("evalConfig", {})
    found = []
    for spec in config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            # the overall-slice threshold the Evaluator writes (or a plain one, for every slice)
            per_slice = [t.get("threshold", {}) for t in metric.get("perSliceThresholds", [])]
            threshold = metric.get("threshold") or (per_slice[0] if per_slice else {})
            name = _snake(metric["className"])
            value = threshold.get("valueThreshold", {})
            if "lowerBound" in value:
                found.append({"metric": name, "kind": "value", "bound": float(value["lowerBound"]),
                              "text": f">= {float(value['lowerBound']):g}"})
            change = threshold.get("changeThreshold", {})
            if "absolute" in change:
                found.append({"metric": name, "kind": "change", "bound": float(change["absolute"]),
                              "text": f"candidate - baseline >= {float(change['absolute']):+g}"})
    return found


def _snake(class_name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in class_name).lstrip("_")


def read(uri: str) -> Dict[str, Any]:
    """Returns the evaluation at `uri` as a dict.

    Keys: metrics {name: {candidate, baseline, diff}}, per_class {class: {precision, recall,
    support}} (argmax, from the confusion matrix),
    per_label {label: accuracy}, confusion (rows: true class, columns: predicted), thresholds,
    validation_ok, failures [{metric, kind, value, text}], has_baseline.
    """
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    metrics: Dict[str, Dict[str, float]] = {}
    per_class: Dict[int, Dict[str, float]] = {}
    per_label: Dict[int, float] = {}
    for per_slice in tfma.load_metrics(uri):
        slice_key = {s.column: s.int64_value for s in per_slice.slice_key.single_slice_keys}
        for kv in per_slice.metric_keys_and_values:
            key, value = kv.key, _value(kv)
            role = key.model_name or CANDIDATE
            if value is None:
                continue
            if "label" in slice_key:
                if key.name == ACCURACY and role == CANDIDATE and not key.is_diff:
                    per_label[int(slice_key["label"])] = value
                continue
            column = "diff" if key.is_diff else role
            metrics.setdefault(key.name, {})[column] = value

    confusion: List[List[float]] = []
    for per_slice in tfma.load_plots(uri):
        if per_slice.slice_key.single_slice_keys:
            continue
        for kv in per_slice.plot_keys_and_values:
            if (kv.key.model_name or CANDIDATE) != CANDIDATE:
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            entries = matrices[0].entries
            n = 1 + max(max(e.actual_class_id, e.predicted_class_id) for e in entries)
            confusion = [[0.0] * n for _ in range(n)]
            for e in entries:
                if e.predicted_class_id >= 0:
                    confusion[e.actual_class_id][e.predicted_class_id] += e.num_weighted_examples

    for k, row in enumerate(confusion):
        predicted_k = sum(r[k] for r in confusion)
        per_class[k] = {"precision": row[k] / predicted_k if predicted_k else float("nan"),
                        "recall": row[k] / sum(row) if sum(row) else float("nan"),
                        "support": sum(row)}

    validation = tfma.load_validation_result(uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            kind = "change" if failure.metric_key.is_diff else "value"
            failures.append({"metric": failure.metric_key.name, "kind": kind,
                             "value": failure.metric_value.double_value.value,
                             "text": failure.message or str(failure.metric_threshold).replace("\n", " ")})
    return {
        "metrics": metrics, "per_class": dict(sorted(per_class.items())),
        "per_label": dict(sorted(per_label.items())), "confusion": confusion,
        "thresholds": _thresholds(uri), "validation_ok": bool(validation.validation_ok),
        "failures": failures, "has_baseline": any(BASELINE in m for m in metrics.values()),
    }


def decision_text(evaluation: Dict[str, Any], blessed: bool, baseline_version) -> List[str]:
    """Sentences that say why the model was blessed or not, naming the deciding thresholds."""
    acc = evaluation["metrics"].get(ACCURACY, {})
    lines = []
    by_kind = {t["kind"]: t for t in evaluation["thresholds"] if t["metric"] == ACCURACY}
    failed = {f["kind"] for f in evaluation["failures"] if f["metric"] == ACCURACY}
    if "value" in by_kind and CANDIDATE in acc:
        verdict = "fails" if "value" in failed else "passes"
        lines.append(f"Accuracy {acc[CANDIDATE]:.4f} {verdict} the bar {by_kind['value']['text']}.")
    if "change" not in by_kind and baseline_version is None:
        lines.append("No model was serving yet, so only the value threshold applied.")
    elif "change" in by_kind:
        if baseline_version is None or BASELINE not in acc:
            lines.append("No model is serving yet, so the change threshold against a baseline was skipped.")
        else:
            diff = acc.get("diff", acc[CANDIDATE] - acc[BASELINE])
            if "change" in failed:
                lines.append(f"It lost to the serving model (version {baseline_version}): accuracy "
                             f"{acc[CANDIDATE]:.4f} against {acc[BASELINE]:.4f}, a change of {diff:+.4f}, "
                             f"where {by_kind['change']['text']} is required.")
            else:
                lines.append(f"Against the serving model (version {baseline_version}): accuracy "
                             f"{acc[CANDIDATE]:.4f} against {acc[BASELINE]:.4f} ({diff:+.4f}), "
                             f"meeting {by_kind['change']['text']}.")
    for f in evaluation["failures"]:
        if f["metric"] != ACCURACY:
            lines.append(f"Threshold on {f['metric']} failed: {f['text']}")
    lines.insert(0, "BLESSED." if blessed else "NOT BLESSED.")
    return lines
