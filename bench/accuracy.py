"""Accuracy on real hand signs: the whole pipeline on digits 0-5 of the shared photos.

    python bench/accuracy.py [--data ../shared/data/sign-language-digits/Dataset] [--epochs 30]
        [--pipeline-root DIR] [-- more local_runner flags]

It runs `pipeline/local_runner.py` as a user would, on the class folders 0-5 (1237 photos of 218
people, 100x100 RGB, resized to 64x64): ExampleGen holds out 20% by a hash of each image's bytes
(the eval split, which no training step sees), the Trainer trains with its defaults (augmentation,
warm-up + cosine learning rate, early stopping and best-weights restore on the eval split), and
TFMA's Evaluator measures the exported model on the eval split. It prints that accuracy, the
training history in brief, and the wall time with the machine's core count. The Evaluator's
threshold is 0.95 (`--min-accuracy`), so "blessed" means the goal was met.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")
GOAL = 0.95


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="the sign-language-digits Dataset folder")
    p.add_argument("--epochs", type=int, default=30, help="most training epochs (early stopping may end sooner)")
    p.add_argument("--pipeline-root", default=None, help="where the run goes (default: a new temporary folder)")
    p.add_argument("runner_flags", nargs="*", help="more local_runner flags, after --")
    args = p.parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"error: {args.data}: no such folder (the shared photos are in ../shared/data)")
        return 2
    root = args.pipeline_root or tempfile.mkdtemp(prefix="signs-accuracy-")
    cmd = [sys.executable, "pipeline/local_runner.py", "--data", os.path.abspath(args.data),
           "--classes", "0,1,2,3,4,5", "--epochs", str(args.epochs), "--min-accuracy", str(GOAL),
           "--pipeline-root", root, *args.runner_flags]
    print("running: " + " ".join(cmd), flush=True)
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    wall = time.time() - started
    if proc.returncode:
        print(f"error: the pipeline failed (exit {proc.returncode}); see the log under {root}/logs")
        return proc.returncode

    from components.report import runs  # pylint: disable=import-outside-toplevel
    report = runs.latest_run(os.path.join(root, "metadata.sqlite"))
    trainer = next(c for c in report.components if c.name == "Trainer")
    model = trainer.outputs["Model"]
    history = json.load(open(os.path.join(model.uri, "history.json")))
    epochs = history["epochs"]
    train_seconds = sum(e["seconds"] for e in epochs)
    print()
    print(f"eval accuracy (TFMA, {report.example_count} held-out photos): {report.accuracy:.4f} "
          f"(goal {GOAL}: {'met' if report.accuracy >= GOAL else 'NOT met'})")
    print(f"epochs: {len(epochs)} run, weights of epoch {history['exported_epoch']} exported"
          f"{', stopped early' if history['stopped_early'] else ''}; "
          f"eval accuracy of the last epoch {epochs[-1].get('val_accuracy', float('nan')):.4f} "
          f"(Keras, no epoch chosen by the eval split)")
    print(f"wall time: {wall:.0f} s for the whole pipeline ({trainer.seconds:.0f} s Trainer, "
          f"{train_seconds:.0f} s in epochs) on {len(os.sched_getaffinity(0))} CPU cores")
    print(f"artifacts: {root}")
    return 0 if report.accuracy >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
