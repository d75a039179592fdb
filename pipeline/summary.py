"""Reads a run back from ML Metadata and renders the end-of-run summary."""

import dataclasses
import os
import json
from typing import Dict, List, Optional, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

# The default pipeline's components (with --schema, SchemaImporter replaces SchemaGen and CurateSchema).
COMPONENT_ORDER = ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
                   "DataChecks", "Trainer", "Evaluator", "Pusher")
_STATES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class ComponentRun:
    name: str
    state: str  # complete, cached, failed, running, ...
    seconds: float
    outputs: Dict[str, metadata_store_pb2.Artifact]  # by artifact type name


@dataclasses.dataclass
class RunReport:
    run_id: str
    components: List[ComponentRun]
    accuracy: Optional[float] = None
    example_count: Optional[int] = None
    blessed: Optional[bool] = None
    failed_thresholds: List[str] = dataclasses.field(default_factory=list)
    pushed_to: Optional[str] = None
    expected: Sequence[str] = COMPONENT_ORDER  # the pipeline's components, in order
    findings: Optional[dict] = None  # DataChecks' findings.json
    findings_path: Optional[str] = None

    def component(self, name: str) -> Optional[ComponentRun]:
        return next((c for c in self.components if c.name == name), None)


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """Opens the SQLite ML Metadata store read-only."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _outputs(store, execution_id: int) -> Dict[str, metadata_store_pb2.Artifact]:
    events = store.get_events_by_execution_ids([execution_id])
    ids = [e.artifact_id for e in events if e.type in (metadata_store_pb2.Event.OUTPUT,
                                                       metadata_store_pb2.Event.DECLARED_OUTPUT)]
    types = {t.id: t.name for t in store.get_artifact_types()}
    return {types[a.type_id]: a for a in store.get_artifacts_by_id(ids)}


def latest_run(metadata_path: str, pipeline_name: str,
               names: Sequence[str] = COMPONENT_ORDER) -> Optional[RunReport]:
    """Reads the newest pipeline run of `pipeline_name` from ML Metadata; None if there is none.

    Args:
      metadata_path: the SQLite ML Metadata file.
      pipeline_name: the pipeline's name.
      names: the pipeline's component ids, in order.
    """
    if not os.path.exists(metadata_path):
        return None
    store = open_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return None
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    in_run = {e.id: e for e in store.get_executions_by_context(run.id)}
    components = []
    for name in names:
        node = store.get_context_by_type_and_name("node", f"{pipeline_name}.{name}")
        if node is None:
            continue
        for execution in store.get_executions_by_context(node.id):
            if execution.id in in_run:
                seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
                components.append(ComponentRun(name, _STATES.get(execution.last_known_state, "?"),
                                               seconds, _outputs(store, execution.id)))
    report = RunReport(run_id=run.name, components=components, expected=tuple(names))
    _add_findings(report)
    _add_evaluation(report)
    return report


def _add_evaluation(report: RunReport) -> None:
    evaluator = report.component("Evaluator")
    if evaluator and "ModelEvaluation" in evaluator.outputs:
        import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

        uri = evaluator.outputs["ModelEvaluation"].uri
        for metrics in tfma.load_metrics(uri):
            if metrics.slice_key.SerializeToString():
                continue  # the overall slice has an empty key
            for kv in metrics.metric_keys_and_values:
                if kv.key.model_name or kv.key.is_diff:
                    continue
                if kv.key.name == "sparse_categorical_accuracy":
                    report.accuracy = kv.value.double_value.value
                elif kv.key.name == "example_count":
                    report.example_count = int(kv.value.double_value.value)
        validation = tfma.load_validation_result(uri)
        for per_slice in validation.metric_validations_per_slice:
            for failure in per_slice.failures:
                report.failed_thresholds.append(
                    f"{failure.metric_key.name} = {failure.metric_value.double_value.value:.4f} "
                    f"fails {_threshold_text(failure.metric_threshold)}")
    if evaluator and "ModelBlessing" in evaluator.outputs:
        report.blessed = bool(evaluator.outputs["ModelBlessing"].custom_properties["blessed"].int_value)
    pusher = report.component("Pusher")
    if pusher and "PushedModel" in pusher.outputs:
        props = pusher.outputs["PushedModel"].custom_properties
        if props["pushed"].int_value:
            report.pushed_to = props["pushed_destination"].string_value


def _add_findings(report: RunReport) -> None:
    checks = report.component("DataChecks")
    if checks and "DataFindings" in checks.outputs:
        path = os.path.join(checks.outputs["DataFindings"].uri, "findings.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                report.findings, report.findings_path = json.load(f), path


def render_findings(findings: dict, path: str) -> List[str]:
    """The data checks' lines of the summary: split sizes, duplicates, warnings."""
    splits = ", ".join(f"{name} {s['examples']}" for name, s in findings["splits"].items())
    dups = findings["duplicates"]
    within = ", ".join(f"{n} within {name}" for name, n in dups["within"].items())
    lines = [f"data checks:   {len(findings['errors'])} errors, {len(findings['warnings'])} warnings "
             f"(findings: {path})",
             f"  examples:    {splits}",
             f"  duplicates:  {within}, {dups['across_splits']} across splits"]
    lines.extend(f"  warning: {w}" for w in findings["warnings"])
    return lines


def _threshold_text(threshold) -> str:
    value = threshold.value_threshold
    parts = []
    if value.HasField("lower_bound"):
        parts.append(f">= {value.lower_bound.value:g}")
    if value.HasField("upper_bound"):
        parts.append(f"<= {value.upper_bound.value:g}")
    if threshold.HasField("change_threshold"):
        change = threshold.change_threshold
        parts.append(f"change vs baseline {change.absolute.value:+g} ({'higher' if change.direction == 1 else 'lower'} is better)")
    return "the bound " + " and ".join(parts) if parts else str(threshold).replace("\n", " ")


def render(report: Optional[RunReport], total_seconds: float, data_text: str,
           artifacts_root: str) -> str:
    """Formats a run report as the plain-text block printed at the end of a run."""
    lines = ["", "=" * 72, "signs-pipeline run summary", "=" * 72, f"data:        {data_text}"]
    if report is None:
        lines.append("no run found in ML Metadata")
        return "\n".join(lines)
    lines.append(f"run id:      {report.run_id}")
    lines.append(f"total time:  {total_seconds:.0f} s")
    lines.append("")
    lines.append(f"  {'component':<18}{'status':<11}{'time':>8}")
    for c in report.components:
        time_text = "-" if c.state == "cached" else f"{c.seconds:.0f} s"
        lines.append(f"  {c.name:<18}{c.state:<11}{time_text:>8}")
    ran = {c.name for c in report.components}
    for name in report.expected:
        if name not in ran:
            lines.append(f"  {name:<18}{'not run':<11}{'-':>8}")
    cached = [c.name for c in report.components if c.state == "cached"]
    if cached:
        lines.append(f"  reused from cache (inputs unchanged): {', '.join(cached)}")
    lines.append("")
    if report.findings is not None:
        lines.extend(render_findings(report.findings, report.findings_path))
    if report.accuracy is not None:
        count = f" on {report.example_count} eval examples" if report.example_count else ""
        lines.append(f"eval accuracy: {report.accuracy:.4f}{count}")
    if report.blessed is not None:
        lines.append(f"blessed:       {'YES' if report.blessed else 'NO'}")
        for failure in report.failed_thresholds:
            lines.append(f"  not blessed because {failure}")
    if report.pushed_to:
        lines.append(f"pushed model:  {report.pushed_to}")
    elif report.blessed is False:
        lines.append("pushed model:  none (the model was not blessed; the serving directory is unchanged)")
    lines.append(f"artifacts:     {artifacts_root} (ML Metadata: {os.path.join(artifacts_root, 'metadata.sqlite')})")
    return "\n".join(lines)
