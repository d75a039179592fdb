"""Runs the SIGNS pipeline on this machine: LocalDagRunner, ML Metadata in SQLite, caching on.

It parses the flags, finds the data, builds the pipeline (`pipeline.definition.create_pipeline`),
runs it and reports: progress, one-line errors, a final summary. TFX is imported only once the flags
and the data have passed their checks.
"""

import atexit
import datetime
import logging
import os
import shutil
import sys
import time
import uuid

from common.redact import printable
from components.data import startup
from components.data.errors import SignsDataError
from components.push import version_dirs
from pipeline import monitor, options


MIN_FREE_BYTES = 2 ** 30  # a run writes about 0.6 GB: checkpoints, the model twice, examples, ML Metadata


def disk_problem(pipeline_root: str, need: int = MIN_FREE_BYTES) -> str:
    """Why a local pipeline root cannot take a run ('' if it can): too little free space. A full
    disk mid-run leaves ML Metadata unable to record the failure ("database or disk is full")."""
    if "://" in pipeline_root:
        return ""
    where = pipeline_root
    while where and not os.path.exists(where):
        where = os.path.dirname(where)
    try:
        free = shutil.disk_usage(where or ".").free
    except OSError:
        return ""
    if free >= need:
        return ""
    return (f"{pipeline_root}: {free / 2 ** 30:.2f} GiB free on its disk, and a run needs about {need / 2 ** 30:g} "
            f"GiB (checkpoints, the model, the examples, ML Metadata); free some space, or pass another "
            f"--pipeline-root")


def _root_cause(error: BaseException) -> BaseException:
    """The SignsDataError (or the Trainer's CheckpointError, a full disk) behind an executor
    failure, if any, else `error` itself."""
    seen, current = set(), error
    while current is not None and id(current) not in seen:
        if isinstance(current, SignsDataError) or type(current).__name__ == "CheckpointError":
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return error


def one_line(error: BaseException) -> str:
    """One line for an error: our data error's message, else its type and first line."""
    lines = str(error).strip().splitlines()
    if isinstance(error, SignsDataError):
        return lines[0]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def new_run_id() -> str:
    """A run id no other run on the same root can have: the start time, then a random suffix."""
    return f"{datetime.datetime.now().isoformat()}-{uuid.uuid4().hex[:6]}"


def _runner(run_id: str):
    """LocalDagRunner with a run id chosen here, so the summary reads this run and no other.

    LocalDagRunner names a run by its start time alone; two runs on one root can then share a
    name, and "the newest run" may be another process's.
    """
    from tfx.dsl.compiler import constants  # pylint: disable=import-outside-toplevel
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=import-outside-toplevel
    from tfx.orchestration.portable import runtime_parameter_utils  # pylint: disable=import-outside-toplevel

    class OwnRunIdRunner(LocalDagRunner):
        def run_with_ir(self, pipeline, run_options=None):
            runtime_parameter_utils.substitute_runtime_parameter(
                pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(pipeline, run_options)

    return OwnRunIdRunner()


def missing_classes(config: options.PipelineConfig) -> str:
    """What `--classes` asks that a folder source (`--data`) has no sub-folder for ('' if nothing)."""
    folders = sorted(n for n in os.listdir(config.data) if os.path.isdir(os.path.join(config.data, n)))
    missing = [c for c in config.classes if str(c) not in folders]
    if not missing:
        return ""
    return (f"--classes: {config.data} has no folder for label{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing))} (its class folders: {', '.join(folders)})")


def run_locally(config: options.PipelineConfig) -> int:
    """Runs the whole pipeline; returns the exit code: 0 ran (blessed or not), 1 failed, 2 bad data."""
    # Loaded here, after the flags: numpy and h5py, then ML Metadata (`--help` answers without them).
    from components.data import sources  # pylint: disable=import-outside-toplevel
    from components.report import run_summary  # pylint: disable=import-outside-toplevel
    from pipeline import data_source  # pylint: disable=import-outside-toplevel

    started = time.time()
    log_path = monitor.setup_logging(config.paths.logs)
    print(f"Full log: {log_path}", flush=True)
    try:
        source = data_source.resolve(config.data, config.paths)
        problem = missing_classes(config) if source.kind == sources.IMAGE_FOLDER else ""
        if problem:
            raise SignsDataError(problem)
        n_images = data_source.estimated_size(source)
        schema_path = data_source.pin_schema(config.schema, config.paths) if config.schema else None
    except SignsDataError as e:
        print(printable(f"error: {e}"))
        return 2
    problem = run_summary.metadata_problem(config.paths.metadata) or disk_problem(config.pipeline_root)
    if problem:
        print(printable(f"error: {problem}"))
        return 1
    data_text = source.describe()
    if source.is_synthetic:
        print(f"No --data given: using the {data_text}. Pass --data for real photos.", flush=True)
        if config.train.photo_augment == "off":
            print(options.SYNTHETIC_PHOTO_AUGMENT_NOTE, flush=True)
    else:
        print(printable(f"Data: {data_text}"), flush=True)
    beam_args = options.beam_pipeline_args(config.beam_args)
    print(f"Beam: {' '.join(beam_args)} (about {n_images} images)", flush=True)

    from tfx.orchestration import metadata  # pylint: disable=import-outside-toplevel
    from pipeline.definition import Placement, create_pipeline  # pylint: disable=import-outside-toplevel

    tfx_pipeline = create_pipeline(config, Placement(
        pipeline_root=config.pipeline_root, data_root=source.root, input_splits=source.splits,
        source_kind=source.kind, serving_dir=config.serving_dir, serving_state=version_dirs.state(config.serving_dir),
        schema_path=schema_path, beam_pipeline_args=beam_args, enable_cache=config.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(config.paths.metadata)))
    run_id = new_run_id()
    print(f"Run id: {run_id}", flush=True)
    names = [c.id for c in tfx_pipeline.components]
    progress = monitor.RunMonitor(config.paths.metadata, run_id, names)
    progress.start()
    error = None
    try:
        _runner(run_id).run(tfx_pipeline)
    except Exception as e:  # pylint: disable=broad-except  (reported as one line, exit non-zero)
        error = _root_cause(e)
    finally:
        progress.stop()
    report = run_summary.run_by_id(config.paths.metadata, run_id, names)
    if error is not None:
        _ended(report)
    print(run_summary.summary_text(report, time.time() - started, data_text, config.pipeline_root))
    print(f"full log:      {log_path}")
    if error is not None:
        print(printable(f"error: {one_line(error)}"))
        low = disk_problem(config.pipeline_root)
        if low:
            print(printable(f"error: {low}"))
        return exit_code(error)
    return 0


def exit_code(error: BaseException) -> int:
    """A failed run's exit code: 2 for bad data, else 1. After a failed HDF5 write it also arranges
    for the process to end without HDF5's exit handler, which would crash it."""
    code = 2 if isinstance(error, SignsDataError) else 1
    if getattr(error, "hdf5", False):
        atexit.register(_leave_without_hdf5, code)
    return code


def _leave_without_hdf5(code: int) -> None:
    """Ends the process without the C exit handlers. After a failed write, HDF5 (in h5py 3.16) cannot
    close its files, and its exit handler crashes: exit 139 after the run had said why it failed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _ended(report) -> None:
    """Marks as failed what ML Metadata still shows running (in a `run_summary.RunReport`) of a run that raised: the run is over,
    and the store could not record the end (a full disk: "database or disk is full")."""
    now = time.time()
    for component in report.components:
        if component.state in ("new", "running"):
            component.state = "failed"
            component.seconds = now - component.execution.create_time_since_epoch / 1e3


def main(argv=None) -> int:
    config = options.parse(argv, description=__doc__)
    startup.start_process()
    return run_locally(config)


if __name__ == "__main__":
    sys.exit(main())
