"""Reads a run back from ML Metadata and renders the end-of-run summary."""

import contextlib
import dataclasses
import json
import os
import sqlite3
import urllib.parse
from typing import Dict, List, Optional, Sequence, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from common.redact import printable
from components.data.layout import PipelineRoot
from components.training.train_config import HISTORY_FILE

# The default pipeline's components (with --schema, SchemaImporter replaces SchemaGen and CurateSchema).
COMPONENT_ORDER = ("ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
                   "DataChecks", "Trainer", "LatestServedModel", "Evaluator", "Pusher", "Review")
_STATES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class ComponentRun:
    name: str
    state: str  # complete, cached, failed, running, ...
    seconds: float
    outputs: Dict[str, metadata_store_pb2.Artifact]  # by artifact type name
    execution: metadata_store_pb2.Execution


@dataclasses.dataclass
class RunReport:
    run_id: str
    components: List[ComponentRun]
    accuracy: Optional[float] = None
    example_count: Optional[int] = None
    blessed: Optional[bool] = None
    decision: List[str] = dataclasses.field(default_factory=list)  # why blessed or not
    pushed_to: Optional[str] = None
    not_pushed_reason: Optional[str] = None  # a blessed model the Pusher did not ship, and why
    already_serving: Optional[int] = None  # the version this model already serves as
    report_path: Optional[str] = None
    baseline: Optional[str] = None  # the model serving when the run started, which it was compared with
    expected: Sequence[str] = COMPONENT_ORDER  # the pipeline's components, in order
    findings: Optional[dict] = None  # DataChecks' findings.json
    findings_path: Optional[str] = None
    training: Optional[str] = None  # the Trainer's outcome: epochs, time, early stop or time budget
    history: Optional[dict] = None  # the Trainer's history.json: config, epochs, the time budget's steps
    failed: Sequence[str] = ()  # the accuracy thresholds the model failed: "value", "change"
    bars: Optional[dict] = None  # the accuracy thresholds' bounds by kind
    shifted: Optional[dict] = None  # the Review's shifted_accuracy.json: {"evaluated", "accuracy": {name: value}}

    def component(self, name: str) -> Optional[ComponentRun]:
        return next((c for c in self.components if c.name == name), None)


MOVE_ASIDE = "move it aside to start a new run history (the artifacts under the pipeline root are kept)"


def metadata_problem(metadata_path: str) -> Optional[str]:
    """Why a file cannot be the runs' ML Metadata store, in one line naming it; None when it can, or
    when a new one will be made there (absent, or 0 bytes: SQLite's empty database)."""
    if not os.path.lexists(metadata_path):
        return None
    if os.path.isdir(metadata_path):
        return f"{metadata_path}: a directory, not an ML Metadata store; {MOVE_ASIDE}"
    if not os.path.isfile(metadata_path):
        return f"{metadata_path}: not a regular file, so not an ML Metadata store; {MOVE_ASIDE}"
    if os.path.getsize(metadata_path) == 0:
        return None
    try:
        uri = f"file:{urllib.parse.quote(os.path.abspath(metadata_path))}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        return f"{metadata_path}: not a readable ML Metadata store ({e}); {MOVE_ASIDE}"
    if check != "ok":
        return f"{metadata_path}: the ML Metadata store is damaged ({check.splitlines()[0]}); {MOVE_ASIDE}"
    if tables and not {"Type", "Artifact", "Execution"} <= tables:
        return f"{metadata_path}: an SQLite database, but not ML Metadata's; {MOVE_ASIDE}"
    return None


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


def run_contexts(store: metadata_store.MetadataStore) -> List[metadata_store_pb2.Context]:
    """Every pipeline run in the store, oldest first."""
    return sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id))


def _executions_by_node(store: metadata_store.MetadataStore,
                        run: metadata_store_pb2.Context) -> Dict[str, List[metadata_store_pb2.Execution]]:
    """A run's executions by component id, oldest first."""
    node_type = store.get_context_type("node").id
    by_node: Dict[str, List[metadata_store_pb2.Execution]] = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.type_id == node_type:  # named "<pipeline>.<component id>"
                by_node.setdefault(context.name.split(".", 1)[1], []).append(execution)
    return by_node


def execution_states(metadata_path: str, run_id: str,
                     names: Sequence[str] = COMPONENT_ORDER) -> List[Tuple[str, int, str, float]]:
    """Each execution of run `run_id` so far: (component id, execution id, state, seconds).

    States are ML Metadata's, lower case: new, running, complete, cached, failed, canceled.
    An empty list while the store or the run does not exist yet.
    """
    if not os.path.exists(metadata_path):
        return []
    store = open_store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run is None:
        return []
    by_node = _executions_by_node(store, run)
    return [(name, e.id, _STATES.get(e.last_known_state, "?"),
             (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1e3)
            for name in names for e in by_node.get(name, [])]


def read_run(store: metadata_store.MetadataStore, run: metadata_store_pb2.Context,
             names: Sequence[str] = COMPONENT_ORDER) -> RunReport:
    """Reads one pipeline run: each component's execution, the data checks and the evaluation.

    Args:
      store: the ML Metadata store.
      run: the run's pipeline_run context.
      names: the pipeline's component ids, in order.
    """
    by_node = _executions_by_node(store, run)
    components = []
    for name in names:
        for execution in by_node.get(name, []):
            seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
            components.append(ComponentRun(name, _STATES.get(execution.last_known_state, "?"),
                                           seconds, _outputs(store, execution.id), execution))
    report = RunReport(run_id=run.name, components=components, expected=tuple(names))
    add_results(report)
    return report


def add_results(report: RunReport) -> None:
    """Fills in what the run's artifacts say: data findings, accuracy, blessing, push, report."""
    _add_findings(report)
    _add_training(report)
    _add_evaluation(report)
    report.shifted, _ = _artifact_json(report, "Review", "components.ReviewReport",
                                       "shifted_accuracy.json")  # components/report/review.py's SHIFTED_FILE


# The shifted-eval figures the run summary names (the Review's page has every shift).
SUMMARY_SHIFTS = (("as they are", "as they are"), ("mean of the five", "phone proxy"), ("all", "pale-wall proxy"))


def shifted_line(shifted: dict) -> str:
    """The summary's line of the Review's shifted_accuracy.json: the eval images as they are, the phone
    proxy's mean over its five shifts and the pale-wall proxy's five together, each with its 95 % interval."""
    accuracy, interval = shifted["accuracy"], shifted.get("interval")
    if not interval:  # a report from before the intervals: every figure, bare
        return ("shifted eval:  " + ", ".join(f"{name} {value:.2f}" for name, value in accuracy.items())
                + f" ({shifted['evaluated']} eval images; see the review report)")
    parts = [f"{label} {accuracy[name]:.2f} ({interval[name][0]:.2f}-{interval[name][1]:.2f})"
             for name, label in SUMMARY_SHIFTS if name in accuracy]
    return (f"shifted eval:  {', '.join(parts)} ({shifted['evaluated']} eval images, 95 % intervals; "
            f"every shift in the review report)")


def _artifact_json(report: RunReport, component: str, artifact_type: str, name: str):
    """(the parsed JSON file `name` in a component's output artifact, its path), or (None, None)."""
    run = report.component(component)
    if run and artifact_type in run.outputs:
        path = os.path.join(run.outputs[artifact_type].uri, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f), path
    return None, None


def _add_training(report: RunReport) -> None:
    history, _ = _artifact_json(report, "Trainer", "Model", HISTORY_FILE)
    if history is not None:
        from components.report import render as render_html  # pylint: disable=import-outside-toplevel

        report.training = render_html.training_outcome(history) or None
        report.history = history


def run_by_id(metadata_path: str, run_id: str,
              names: Sequence[str] = COMPONENT_ORDER) -> Optional[RunReport]:
    """Reads the pipeline run named `run_id`; None if the store has no such run (yet)."""
    if not os.path.exists(metadata_path):
        return None
    store = open_store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    return read_run(store, run, names) if run is not None else None


def latest_run(metadata_path: str,
               names: Sequence[str] = COMPONENT_ORDER) -> Optional[RunReport]:
    """Reads the newest pipeline run from ML Metadata; None if there is none."""
    if not os.path.exists(metadata_path):
        return None
    store = open_store(metadata_path)
    runs = run_contexts(store)
    return read_run(store, runs[-1], names) if runs else None


def _add_evaluation(report: RunReport) -> None:
    evaluator = report.component("Evaluator")
    if evaluator and "ModelEvaluation" in evaluator.outputs:
        from components.report import results  # pylint: disable=import-outside-toplevel

        result = results.read(evaluator.outputs["ModelEvaluation"].uri)
        metrics = result["metrics"]
        report.accuracy = metrics.get(results.ACCURACY, {}).get(results.CANDIDATE)
        count = metrics.get("example_count", {}).get(results.CANDIDATE)
        report.example_count = int(count) if count is not None else None
        if "ModelBlessing" in evaluator.outputs:
            report.blessed = bool(evaluator.outputs["ModelBlessing"].custom_properties["blessed"].int_value)
            baseline = report.component("LatestServedModel")
            version = None
            if baseline and "Model" in baseline.outputs:
                props = baseline.outputs["Model"].custom_properties
                version = props["served_version"].int_value if "served_version" in props else None
            report.decision = results.decision_text(result, report.blessed, version)[1:]
            report.failed = sorted({f["kind"] for f in result["failures"] if f["metric"] == results.ACCURACY})
            report.bars = {t["kind"]: t["bound"] for t in result["thresholds"] if t["metric"] == results.ACCURACY}
    served = report.component("LatestServedModel")
    if served and "Model" in served.outputs:
        props = served.outputs["Model"].custom_properties
        if "absent" in props and props["absent"].int_value:
            report.baseline = "none (nothing was serving)"
        elif "served_version" in props:
            report.baseline = f"version {props['served_version'].int_value} ({props['served_from'].string_value})"
        if "skipped_versions" in props:
            report.baseline = f"{report.baseline}; passed over: {props['skipped_versions'].string_value}"
    pusher = report.component("Pusher")
    if pusher and "PushedModel" in pusher.outputs:
        props = pusher.outputs["PushedModel"].custom_properties
        if props["pushed"].int_value:
            report.pushed_to = props["pushed_destination"].string_value
        elif "already_serving_version" in props:
            report.already_serving = props["already_serving_version"].int_value
        elif "not_pushed_reason" in props:
            report.not_pushed_reason = props["not_pushed_reason"].string_value
    review = report.component("Review")
    if review and "components.ReviewReport" in review.outputs:
        report.report_path = review.outputs["components.ReviewReport"].custom_properties["report_path"].string_value


def _add_findings(report: RunReport) -> None:
    findings, path = _artifact_json(report, "DataChecks", "components.DataFindings", "findings.json")
    if findings is not None:
        report.findings, report.findings_path = findings, path


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


def next_steps(report: RunReport) -> List[str]:
    """What to run after a model that was not blessed, for each reason it was not.

    Each step changes an input of the component that decides it, so the next run does that part
    again instead of taking it from the cache: a training flag re-trains, a threshold flag re-runs
    the Evaluator on the same model.
    """
    history = report.history or {}
    config = history.get("config", {})
    steps: List[str] = []
    if "value" in report.failed or not report.failed:
        if history.get("stopped_for_time"):
            budget = config.get("time_budget_minutes", 0)
            steps.append(f"Training stopped for time ({budget:g}-minute budget): give it more, e.g. "
                         f"--time-budget-minutes {max(2 * budget, budget + 5):g} (0 lifts the budget); "
                         "the Trainer then trains again.")
        elif history.get("stopped_early"):
            steps.append("Training stopped early: eval accuracy had stopped improving. More epochs will not "
                         "help; more or cleaner data, or other training flags (--help lists them), may.")
        elif config.get("epochs"):
            steps.append(f"Training ran all {config['epochs']} epochs: ask for more, e.g. --epochs "
                         f"{2 * config['epochs']}; the Trainer then trains again.")
        bar = (report.bars or {}).get("value")
        if bar is not None:
            steps.append(f"The bar itself is --min-accuracy {bar:g}: lowering it re-runs only the Evaluator.")
    if "change" in report.failed:
        gain = (report.bars or {}).get("change", 0.0)
        steps.append(f"It lost to the model now serving, scored on the same eval split: --min-improvement "
                     f"{gain:g} decides by how much a new model must beat it. Train a better one (more --epochs, or "
                     "more --time-budget-minutes where the budget stopped it), or lower --min-improvement to "
                     "accept a smaller change (this re-runs only the Evaluator).")
    steps.append("Running the same command again reuses this run's results from the cache; a changed flag "
                 "re-runs what it feeds.")
    return steps


def summary_text(report: Optional[RunReport], total_seconds: float, data_text: str,
           artifacts_root: str, metadata: Optional[str] = None) -> str:
    """Formats a run report as the plain-text block printed at the end of a run."""
    lines = ["", "=" * 72, "signs-pipeline run summary", "=" * 72, f"data:        {data_text}"]
    if report is None:
        lines.append("no run found in ML Metadata")
        return printable("\n".join(lines))
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
        ran = [c.name for c in report.components if c.state == "complete"]
        if ran:
            lines.append(f"  re-ran (an input changed): {', '.join(ran)}")
        if "LatestServedModel" in ran:
            lines.append("  LatestServedModel re-ran because the serving directory changed since the last run")
    lines.append("")
    if report.findings is not None:
        lines.extend(render_findings(report.findings, report.findings_path))
    if report.training:
        lines.append(f"training:      {report.training}")
    if report.baseline is not None:
        lines.append(f"baseline:      {report.baseline}")
    if report.accuracy is not None:
        count = f" on {report.example_count} eval examples" if report.example_count else ""
        lines.append(f"eval accuracy: {report.accuracy:.4f}{count}")
    if report.shifted and report.shifted.get("accuracy"):
        lines.append(shifted_line(report.shifted))
    if report.blessed is not None:
        lines.append(f"blessed:       {'YES' if report.blessed else 'NO'}")
        for line in report.decision:
            lines.append(f"  {line}")
    if report.pushed_to:
        lines.append(f"pushed model:  {report.pushed_to}")
    elif report.already_serving is not None:
        lines.append(f"pushed model:  none: this model already serves as version {report.already_serving}")
    elif report.not_pushed_reason:
        lines.append(f"pushed model:  none: {report.not_pushed_reason}")
    elif report.blessed is False:
        lines.append("pushed model:  none (the model was not blessed; the serving directory is unchanged)")
    if report.blessed is False:
        lines.extend(f"next:          {line}" if i == 0 else f"               {line}"
                     for i, line in enumerate(next_steps(report)))
    if report.report_path:
        lines.append(f"review report: {report.report_path}")
    if metadata is None:
        metadata = f"ML Metadata: {PipelineRoot(artifacts_root).metadata}"
    lines.append(f"artifacts:     {artifacts_root} ({metadata})")
    return printable("\n".join(lines))  # a file name's escape sequence must not act on the terminal
