"""Lists past pipeline runs from ML Metadata and prints the path of a run's review report.

    python -m components.report                 # the runs, then the latest run's report path
    python -m components.report --run RUN_ID    # that run's report path
"""

import argparse
import dataclasses
import logging
import os
import sys
import warnings
from typing import Optional

from common import flags
from common.flags import setting
from components.data import startup
from components.data.layout import PipelineRoot

@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Which runs to read; the flags are made from these fields."""

    pipeline_root: str = setting("pipeline_output", "the local runner's --pipeline-root")
    run: Optional[str] = setting(None, "a run id from the list (default: the latest)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_flags(p, ReportConfig)
    args = ReportConfig(**flags.values(ReportConfig, p.parse_args(argv)))
    startup.start_process()
    metadata_path = PipelineRoot(os.path.abspath(args.pipeline_root)).metadata
    if not os.path.exists(metadata_path):
        print(f"error: {metadata_path}: no ML Metadata store; run the pipeline first "
              f"(python pipeline/local_runner.py --pipeline-root {args.pipeline_root})")
        return 1
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-api-core's Python 3.10 notice
    from components.report import run_summary  # pylint: disable=import-outside-toplevel

    problem = run_summary.metadata_problem(metadata_path)
    if problem:
        print(f"error: {problem}")
        return 1
    if os.path.getsize(metadata_path) == 0:  # a run that stopped before it recorded anything
        print(f"error: {metadata_path}: no pipeline runs recorded")
        return 1
    store = run_summary.open_store(metadata_path)
    pipeline_runs = run_summary.run_contexts(store)
    if not pipeline_runs:
        print(f"error: {metadata_path}: no pipeline runs recorded")
        return 1
    chosen = pipeline_runs[-1] if args.run is None else next((r for r in pipeline_runs if r.name == args.run), None)
    if chosen is None:
        print(f"error: no run {args.run!r} in {metadata_path}; known runs: {', '.join(r.name for r in pipeline_runs)}")
        return 1
    print(f"{'run id':<28}{'data':<40}{'accuracy':>9}  {'blessed':<8}{'pushed':<10}")
    for run in pipeline_runs:
        report = run_summary.read_run(store, run)
        example_gen = report.component("ExampleGen")
        data = example_gen.execution.custom_properties["input_base"].string_value if example_gen else "-"
        data = ("..." + data[-36:]) if len(data) > 39 else data
        accuracy = f"{report.accuracy:.4f}" if report.accuracy is not None else "-"
        blessed = {None: "-", True: "yes", False: "no"}[report.blessed]
        if report.pushed_to:
            pushed = "v" + os.path.basename(report.pushed_to)
        elif report.already_serving is not None:
            pushed = f"(= v{report.already_serving})"
        else:
            pushed = "-"
        failed = any(c.state == "failed" for c in report.components)
        marker = "*" if run.id == chosen.id else " "
        print(f"{marker}{run.name:<27}{data:<40}{accuracy:>9}  {blessed:<8}{pushed:<10}{' FAILED' if failed else ''}")
    report = run_summary.read_run(store, chosen)
    if report.report_path:
        print(f"\nreview report of run {chosen.name}:\n{report.report_path}")
        return 0
    print(f"\nrun {chosen.name} has no review report (it stopped before the Review component)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
