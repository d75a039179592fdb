"""Lists past pipeline runs from ML Metadata and prints the path of a run's review report.

    python -m pipeline.review                 # the runs, then the latest run's report path
    python -m pipeline.review --run RUN_ID    # that run's report path
"""

import argparse
import logging
import os
import sys
import warnings

from pipeline import configs


def main(argv=None) -> int:
    d = configs.PipelineConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline-root", default=d.pipeline_root, help="the local runner's --pipeline-root")
    p.add_argument("--serving-dir", default=None, help="the push destination (default: <pipeline-root>/serving_model)")
    p.add_argument("--run", default=None, help="a run id from the list (default: the latest)")
    args = p.parse_args(argv)
    config = configs.PipelineConfig(pipeline_root=os.path.abspath(args.pipeline_root),
                                     serving_dir=os.path.abspath(args.serving_dir) if args.serving_dir else None)
    if not os.path.exists(config.metadata_path):
        print(f"error: {config.metadata_path}: no ML Metadata store; run the pipeline first "
              f"(python pipeline/local_runner.py --pipeline-root {args.pipeline_root})")
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-api-core's Python 3.10 notice
    from pipeline import summary  # pylint: disable=import-outside-toplevel

    store = summary.open_store(config.metadata_path)
    runs = summary.run_contexts(store)
    if not runs:
        print(f"error: {config.metadata_path}: no pipeline runs recorded")
        return 1
    chosen = runs[-1] if args.run is None else next((r for r in runs if r.name == args.run), None)
    if chosen is None:
        print(f"error: no run {args.run!r} in {config.metadata_path}; known runs: {', '.join(r.name for r in runs)}")
        return 1
    print(f"{'run id':<28}{'data':<40}{'accuracy':>9}  {'blessed':<8}{'pushed':<10}")
    for run in runs:
        report = summary.read_run(store, run, configs.PIPELINE_NAME)
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
    report = summary.read_run(store, chosen, configs.PIPELINE_NAME)
    if report.report_path:
        print(f"\nreview report of run {chosen.name}:\n{report.report_path}")
        return 0
    print(f"\nrun {chosen.name} has no review report (it stopped before the Review component)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
