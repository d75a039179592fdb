"""Reads the Evaluator's TFMA output, through TFMA's own loaders, into plain Python for reports and summaries.

`tfma.load_eval_result` gives each model's metrics and plots by slice, and the EvalConfig the
Evaluator ran with (as a proto, whatever JSON spelling the file uses);
`tfma.metrics.metric_thresholds_from_metrics_specs` names the thresholds in it, and
`tfma.load_validation_result` says which of them failed. Nothing here recomputes a metric: per-class
precision and recall are TFMA metrics (see components.evaluation.evaluator.eval_config).
"""

import math
from typing import Any, Dict, List, Optional

CANDIDATE, BASELINE = "candidate", "baseline"
ACCURACY = "sparse_categorical_accuracy"
PRECISION, RECALL = "precision", "recall"
LABEL = "label"  # the feature the Evaluator slices by
# Metric names as shown to people, in display order.
DISPLAY = {
    ACCURACY: "accuracy",
    "sparse_categorical_crossentropy": "loss (cross-entropy)",
    "expected_calibration_error": "calibration error (ECE)",
    "example_count": "eval examples",
}
LOWER_IS_BETTER = {"sparse_categorical_crossentropy", "expected_calibration_error"}
_CONFUSION_PLOT = "multiClassConfusionMatrixAtThresholds"


def _number(value: Any) -> Optional[float]:
    """A metric's value from TFMA's dict form ({'doubleValue': x}); None for other kinds and NaN.

    TFMA writes NaN (as the string 'NaN') where a metric is undefined, e.g. the precision of a
    class that was never predicted.
    """
    number = value.get("doubleValue") if isinstance(value, dict) else None
    if number is None or not math.isfinite(float(number)):
        return None
    return float(number)


def _load(uri: str):
    """TFMA's EvalResult of the candidate, and of the baseline (None if none was evaluated).

    With no baseline TFX's Evaluator drops the baseline's ModelSpec and names the one model ''; with
    one, each model is loaded by its name in the EvalConfig.
    """
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    first = tfma.load_eval_result(uri)
    if first.config is None or not first.config.model_specs:
        raise ValueError(f"{uri}: not a TFMA evaluation (no eval_config.json with model specs)")
    specs = list(first.config.model_specs)
    candidates = [s.name for s in specs if not s.is_baseline]
    baselines = [s.name for s in specs if s.is_baseline]
    if len(candidates) != 1 or len(baselines) > 1:
        raise ValueError(f"{uri}: expected one candidate and at most one baseline model, "
                         f"got {[(s.name, s.is_baseline) for s in specs]}")
    if not baselines:
        return first, None
    return (tfma.load_eval_result(uri, model_name=candidates[0]),
            tfma.load_eval_result(uri, model_name=baselines[0]))


def _overall(result, class_id: Optional[int] = None) -> Dict[str, Any]:
    """The overall slice's metrics of an EvalResult by name (of one class's top-1 binarization if
    `class_id` is given); {} where TFMA has none, e.g. an evaluation run with an older EvalConfig."""
    try:
        if class_id is None:
            return result.get_metrics_for_slice() or {}
        return result.get_metrics_for_slice(class_id=class_id, top_k=1) or {}
    except KeyError:  # TFMA's accessor indexes by output and sub-key
        return {}


def _metrics_table(candidate, baseline) -> Dict[str, Dict[str, float]]:
    """{metric: {candidate, baseline, diff}} on the overall slice (diff: TFMA's candidate - baseline)."""
    table: Dict[str, Dict[str, float]] = {}
    for name, value in _overall(candidate).items():
        if _number(value) is None:
            continue
        if name.endswith("_diff"):
            table.setdefault(name[:-len("_diff")], {})["diff"] = _number(value)
        else:
            table.setdefault(name, {})[CANDIDATE] = _number(value)
    if baseline is not None:
        for name, value in _overall(baseline).items():
            if _number(value) is not None and name in table:
                table[name][BASELINE] = _number(value)
    return table


def _label_counts(result) -> Dict[int, float]:
    """Eval examples of each class: TFMA's example_count on the by-label slices."""
    counts = {}
    for slice_key, by_output in result.slicing_metrics:
        if len(slice_key) == 1 and slice_key[0][0] == LABEL:
            count = _number(by_output.get("", {}).get("", {}).get("example_count"))
            if count is not None:
                counts[int(slice_key[0][1])] = count
    return counts


def _per_class(candidate, baseline, class_ids: List[int]) -> Dict[int, Dict[str, Optional[float]]]:
    """{class: {precision, recall, examples, baseline_precision, baseline_recall}} from TFMA.

    Precision and recall are TFMA's, binarized by class id with top_k 1 (argmax); a value is None
    where TFMA has none (e.g. an evaluation run with an older config).
    """
    examples = _label_counts(candidate)
    found = {}
    for class_id in class_ids:
        row: Dict[str, Optional[float]] = {"examples": examples.get(class_id, 0.0)}
        for prefix, result in (("", candidate), ("baseline_", baseline)):
            values = _overall(result, class_id) if result is not None else {}
            for name in (PRECISION, RECALL):
                row[prefix + name] = _number(values.get(name))
        found[class_id] = row
    return found


def _confusion(candidate) -> List[List[float]]:
    """TFMA's multi-class confusion matrix of the overall slice: rows true class, columns predicted.

    Examples whose top prediction is below the plot's threshold (predicted id -1) are left out;
    the Evaluator's plot uses threshold 0, so none are.
    """
    for slice_key, by_output in candidate.plots:
        if slice_key:
            continue
        plot = by_output.get("", {}).get("", {}).get(_CONFUSION_PLOT, {})
        matrices = plot.get("matrices", [])
        if not matrices:
            return []
        # TFMA's dict form leaves out fields that are 0 (class 0, empty cells).
        entries = [(e.get("actualClassId", 0), e.get("predictedClassId", 0), e.get("numWeightedExamples", 0.0))
                   for e in matrices[0].get("entries", [])]
        if not entries:
            return []
        n = 1 + max(max(actual, predicted) for actual, predicted, _ in entries)
        matrix = [[0.0] * n for _ in range(n)]
        for actual, predicted, count in entries:
            if predicted >= 0:
                matrix[actual][predicted] = count
        return matrix
    return []


def _threshold_text(kind: str, bound: float) -> str:
    return f">= {bound:g}" if kind == "value" else f"candidate - baseline >= {bound:+g}"


def _thresholds(config, candidate_name: str) -> List[Dict[str, Any]]:
    """The overall slice's lower bounds on the candidate, as {metric, kind, bound, text}.

    kind is 'value' (a bar the metric must reach) or 'change' (candidate minus baseline).
    """
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    found = []
    by_key = tfma.metrics.metric_thresholds_from_metrics_specs(config.metrics_specs, eval_config=config)
    for key, slices_and_thresholds in by_key.items():
        if key.model_name != candidate_name or key.sub_key is not None:
            continue  # the baseline's, or a per-class metric's
        for slice_spec, threshold in slices_and_thresholds:
            if slice_spec is not None and slice_spec != tfma.SlicingSpec():
                continue  # a threshold on other slices than the overall one
            kind = "change" if key.is_diff else "value"
            bound = threshold.absolute if key.is_diff else threshold.lower_bound
            if not threshold.HasField("absolute" if key.is_diff else "lower_bound"):
                continue
            found.append({"metric": key.name, "kind": kind, "bound": float(bound.value),
                          "text": _threshold_text(kind, float(bound.value))})
    return sorted(found, key=lambda t: (t["metric"], t["kind"] != "value"))


def _failures(uri: str) -> Dict[str, Any]:
    """TFMA's validation: whether it passed, and each failed threshold as {metric, kind, value, text}."""
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    validation = tfma.load_validation_result(uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append({"metric": failure.metric_key.name,
                             "kind": "change" if failure.metric_key.is_diff else "value",
                             "value": failure.metric_value.double_value.value,
                             "text": failure.message or str(failure.metric_threshold).replace("\n", " ")})
    return {"validation_ok": bool(validation.validation_ok), "failures": failures}


def read(uri: str) -> Dict[str, Any]:
    """Returns the evaluation at `uri` (a ModelEvaluation artifact's directory) as a dict.

    Keys: metrics {name: {candidate, baseline, diff}} on the overall slice; per_class {class:
    {precision, recall, examples, baseline_precision, baseline_recall}}; confusion (rows: true
    class, columns: predicted); thresholds [{metric, kind, bound, text}]; validation_ok; failures
    [{metric, kind, value, text}]; has_baseline.
    """
    candidate, baseline = _load(uri)
    candidate_name = next(s.name for s in candidate.config.model_specs if not s.is_baseline)
    class_ids = sorted({c for spec in candidate.config.metrics_specs for c in spec.binarize.class_ids.values})
    metrics = _metrics_table(candidate, baseline)
    return {
        "metrics": metrics,
        "per_class": _per_class(candidate, baseline, class_ids),
        "confusion": _confusion(candidate),
        "thresholds": _thresholds(candidate.config, candidate_name),
        **_failures(uri),
        "has_baseline": any(BASELINE in m for m in metrics.values()),
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
