"""Accuracy on real hand signs, in-domain and cross-domain, on people no choice was made on.

    python bench/accuracy.py [--split dev|test] [--data ../shared/data/sign-language-digits/Dataset]
        [--epochs N] [--pipeline-root DIR] [--score-only] [--json FILE] [-- more local_runner flags]
    python bench/accuracy.py --table A.json B.json ...    # what each run moved, as a Markdown table

It holds whole people out first: bench/domains.py groups the photos by person and a stable hash
puts each person in `dev` (20 %), `test` (20 %) or `train` (60 %). The train people's photos of
0-5 go to `pipeline/local_runner.py`, run as a user runs it: ExampleGen holds out 20 % of them by
a hash of each image's bytes, the validation split on which the Trainer stops early and picks the
epoch it exports, and on which TFMA's Evaluator blesses. Then it classifies the held-out people's
photos (`--split`: dev, where the settings are chosen; test, which only confirms them) with the
exported model, through its raw-bytes serving signature:

- in-domain: the held-out people's photos as they are;
- the phone proxy: the same photos as people photograph their own hands (turned, further away
  with the forearm in frame, at an angle, in shadow, in another room), with no mask
  (components/evaluation/shifts.py, PHONE_SHIFTS); each shift, the first four together, and the
  mean of the five (a percentile bootstrap interval over the photos);
- the pale-wall proxy: another wall, white balance, framing, camera, light, then all five (its
  wall is found by the skin-and-pale-wall rule the Trainer's augmentation also rests on);
- test-time augmentation: in-domain and phone with each photo's probabilities averaged with its
  mirror image's;
- 300 drawn hands of the synthetic set.

Each other figure has its 95 % Wilson interval. Both splits score the same training (the train people do
not change), so `--score-only --split test` scores an earlier run's model on the test people.
It prints the validation accuracy (chosen on, for contrast), the table, the training history in
brief and the wall time with the CPU. `--json` writes the figures; `--table` sets runs side by side.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import domains
from bench.machine import cpu_model
from components.evaluation import intervals, shifts
from components.data import startup
from components.data.layout import PipelineRoot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")
CLASSES = range(6)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DRAWN_HANDS = 300
IN_DOMAIN = "in-domain"
PHONE = shifts.PHONE_PROXY
TTA = "flip TTA"


def list_photos(data: str):
    """(path, digit) of every photo in the digit folders 0-9 (all of them: a person's run spans 0-9)."""
    photos = []
    for digit in range(10):
        folder = os.path.join(data, str(digit))
        if os.path.isdir(folder):
            photos += [(os.path.join(folder, name), digit) for name in sorted(os.listdir(folder))
                       if name.lower().endswith(IMAGE_SUFFIXES)]
    return photos


def split_people(photos):
    """{split: photos of 0-5 of its people}, and {split: number of people}, by `domains.split_of`."""
    split, people = {}, {}
    for group in domains.people(photos):
        name = domains.split_of(group)
        split.setdefault(name, []).extend((p, d) for p, d in group if d in CLASSES)
        people[name] = people.get(name, 0) + 1
    return split, people


def classifier(model_dir: str, batch: int = 64):
    """A function: list of encoded images -> class probabilities (N, classes), through the raw-bytes signature."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer.export import IMAGE_BYTES_SIGNATURE  # pylint: disable=import-outside-toplevel

    signature = tf.saved_model.load(model_dir).signatures[IMAGE_BYTES_SIGNATURE]

    def classify(images):
        out = [signature(image_bytes=tf.constant(images[i:i + batch]))["probabilities"].numpy()
               for i in range(0, len(images), batch)]
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)
    return classify


def _mirrored(image):
    from PIL import ImageOps  # pylint: disable=import-outside-toplevel
    return ImageOps.mirror(image)


def held_out_accuracies(classify, photos):
    """{measure: {"correct", "n", "accuracy", "low", "high"}} on the held-out photos and drawn hands."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    from components.data import synthetic  # pylint: disable=import-outside-toplevel

    labels = np.array([d for _, d in photos])
    originals = [Image.open(p).convert("RGB") for p, _ in photos]
    keys = [os.path.basename(p) for p, _ in photos]
    results = {}
    for row in shifts.score(lambda batch: np.argmax(classify(batch), axis=-1), originals, keys, labels):
        name = f"{row['group']}: {row['name']}" if row["group"] else IN_DOMAIN
        results[name] = {k: row[k] for k in ("correct", "n", "accuracy", "low", "high")}

    def score(name, images, truth, tta=False):
        probabilities = classify([shifts.encoded_png(x) for x in images])
        if tta:
            probabilities = (probabilities + classify([shifts.encoded_png(_mirrored(x)) for x in images])) / 2
        correct = int(np.sum(np.argmax(probabilities, axis=-1) == truth))
        low, high = intervals.wilson(correct, len(truth))
        results[name] = {"correct": correct, "n": len(truth), "accuracy": correct / max(1, len(truth)),
                         "low": low, "high": high}

    score(f"{TTA}: {IN_DOMAIN}", originals, labels, tta=True)
    phone = [shifts.phone_shifted(x, shifts.PHONE, k) for x, k in zip(originals, keys)]
    score(f"{TTA}: {PHONE}: {shifts.PHONE}", phone, labels, tta=True)
    drawn, drawn_labels = synthetic.make_split(DRAWN_HANDS, 7)
    score("drawn hands (synthetic)", [Image.fromarray(x) for x in drawn], drawn_labels)
    return results


def _cell(figure) -> str:
    return f"{figure['accuracy']:.3f} ({figure['low']:.2f}-{figure['high']:.2f})"


def table(paths) -> str:
    """A Markdown table of the runs in `paths` (their --json files), a column each, the first the baseline."""
    runs = [json.load(open(p)) for p in paths]
    labels = [r.get("label") or os.path.splitext(os.path.basename(p))[0] for r, p in zip(runs, paths)]
    lines = ["| measure (95 % interval) | " + " | ".join(labels) + " |", "|---|" + "---|" * len(runs)]
    for measure in runs[0]["held_out"]:
        cells = []
        for r in runs:
            figure = r["held_out"].get(measure)
            if figure is None:
                cells.append("")
                continue
            delta = figure["accuracy"] - runs[0]["held_out"][measure]["accuracy"]
            cells.append(_cell(figure) + (f" {delta:+.3f}" if r is not runs[0] else ""))
        lines.append(f"| {measure} | " + " | ".join(cells) + " |")
    lines.append("| validation accuracy (chosen on) | " + " | ".join(f"{r['validation']:.3f}" for r in runs) + " |")
    lines.append("| epochs run (exported) | " + " | ".join(f"{r['epochs']} ({r['exported_epoch']})" for r in runs) + " |")
    lines.append("| split, people | " + " | ".join(f"{r['split']}, {r['people'][r['split']]}" for r in runs) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="the sign-language-digits Dataset folder")
    p.add_argument("--split", default="dev", choices=("dev", "test"),
                   help="the held-out people scored: dev (settings are chosen on it) or test (nothing is)")
    p.add_argument("--epochs", type=int, default=None, help="most training epochs (default: the runner's)")
    p.add_argument("--pipeline-root", default=None, help="where the run goes (default: a new temporary folder)")
    p.add_argument("--score-only", action="store_true",
                   help="score the model of the run already under --pipeline-root; train nothing")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--label", default=None, help="the run's name in --table (default: the JSON file's)")
    p.add_argument("--table", nargs="+", metavar="JSON", help="print these runs' figures side by side and stop")
    p.add_argument("runner_flags", nargs="*", help="more local_runner flags, after --")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    if not os.path.isdir(args.data):
        print(f"error: {args.data}: no such folder (the shared photos are in ../shared/data)")
        return 2
    if args.score_only and not args.pipeline_root:
        print("error: --score-only scores an earlier run: name its --pipeline-root")
        return 2
    splits, people = split_people(list_photos(args.data))
    held_out, train = splits.get(args.split, []), splits.get("train", [])
    if not train or not held_out:
        print(f"error: {args.data}: no photos of 0-5 for {'training' if not train else 'the ' + args.split + ' split'} "
              f"(digit folders 0-9 of JPEG or PNG photos expected)")
        return 2
    startup.enable()  # before TensorFlow is imported, here and in the runner
    root = args.pipeline_root or tempfile.mkdtemp(prefix="signs-accuracy-")
    print(f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores")
    print(f"people: {people.get('train', 0)} for training and validation ({len(train)} photos of 0-5), "
          f"{people.get(args.split, 0)} held out in the {args.split} split ({len(held_out)} photos)")
    wall = None
    if not args.score_only:
        data = os.path.join(root, "train-people")  # what the pipeline may see: the train people's photos
        shutil.rmtree(data, ignore_errors=True)
        for path, digit in train:
            os.makedirs(os.path.join(data, str(digit)), exist_ok=True)
            shutil.copyfile(path, os.path.join(data, str(digit), os.path.basename(path)))
        cmd = [sys.executable, "pipeline/local_runner.py", "--data", data, "--classes", "0,1,2,3,4,5",
               "--pipeline-root", root, *(["--epochs", str(args.epochs)] if args.epochs else []), *args.runner_flags]
        print("running: " + " ".join(cmd), flush=True)
        started = time.time()
        proc = subprocess.run(cmd, cwd=REPO, check=False)
        wall = time.time() - started
        if proc.returncode:
            print(f"error: the pipeline failed (exit {proc.returncode}); see the log under {root}/logs")
            return proc.returncode

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # this process's TensorFlow: no start-up log
    from tfx.utils import path_utils  # pylint: disable=import-outside-toplevel
    from components.report import run_summary  # pylint: disable=import-outside-toplevel
    from components.training.train_config import HISTORY_FILE  # pylint: disable=import-outside-toplevel
    report = run_summary.latest_run(PipelineRoot(root).metadata)
    trainer = next(c for c in report.components if c.name == "Trainer")
    model = trainer.outputs["Model"]
    history = json.load(open(os.path.join(model.uri, HISTORY_FILE)))
    epochs = history["epochs"]
    results = held_out_accuracies(classifier(path_utils.serving_model_dir(model.uri)), held_out)

    print()
    print(f"validation accuracy (TFMA, {report.example_count} photos of the training people; early stopping, "
          f"the exported epoch and the blessing were chosen on it): {report.accuracy:.4f}")
    print(f"{args.split} split accuracy, 95 % Wilson intervals "
          f"({'the settings are chosen on it' if args.split == 'dev' else 'nothing was chosen on it'}):")
    width = max(len(name) for name in results)
    for name, figure in results.items():
        print(f"  {name:<{width}}  {figure['accuracy']:.4f}  ({figure['low']:.2f}-{figure['high']:.2f}, "
              f"{figure['correct']:g}/{figure['n']})")
    print(f"epochs: {len(epochs)} run, weights of epoch {history['exported_epoch']} exported"
          f"{', stopped early' if history['stopped_early'] else ''}; "
          f"train accuracy of the last epoch {epochs[-1].get('accuracy', float('nan')):.4f}")
    train_seconds = sum(e["seconds"] for e in epochs)
    print((f"wall time: {wall:.0f} s for the whole pipeline; " if wall else "") +
          f"{trainer.seconds:.0f} s Trainer, {train_seconds:.0f} s in epochs")
    print(f"artifacts: {root}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label": args.label, "cpu": cpu_model(), "split": args.split, "validation": report.accuracy,
                       "held_out": results, "people": people, "epochs": len(epochs),
                       "exported_epoch": history["exported_epoch"], "config": history.get("config"),
                       "runner_flags": args.runner_flags, "wall_s": wall, "trainer_s": trainer.seconds,
                       "epochs_s": train_seconds}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
