"""Accuracy on real hand signs, in-domain and cross-domain, each on photos no choice was made on.

    python bench/accuracy.py [--data ../shared/data/sign-language-digits/Dataset] [--epochs 30]
        [--test-percent 20] [--pipeline-root DIR] [-- more local_runner flags]

It holds whole people out first (bench/domains.py groups the photos by person; `--test-percent`
of the people, by a stable hash). Their photos of 0-5 are the test split: no training step, no
early stop, no exported epoch and no blessing looks at them. The other people's photos go to
`pipeline/local_runner.py`, run as a user runs it: ExampleGen holds out 20 % of them by a hash of
each image's bytes, the validation split on which the Trainer stops early and picks the epoch it
exports, and on which TFMA's Evaluator blesses. Then it classifies the test photos with the
Trainer's exported model, through its raw-bytes serving signature:

- in-domain: the test people's photos as they are;
- cross-domain: the same photos under each shift of components/evaluation/shifts.py (another wall, white
  balance, framing, camera and light, then all five), and 300 drawn hands of the synthetic set.

It prints the validation accuracy (chosen on, for contrast), a table of the test accuracies, the
training history in brief and the wall time with the CPU. `--json` writes the figures.
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
from components.evaluation import shifts
from bench.machine import cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")
CLASSES = range(6)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DRAWN_HANDS = 300


def list_photos(data: str):
    """(path, digit) of every photo in the digit folders 0-9 (all of them: a person's run spans 0-9)."""
    photos = []
    for digit in range(10):
        folder = os.path.join(data, str(digit))
        if os.path.isdir(folder):
            photos += [(os.path.join(folder, name), digit) for name in sorted(os.listdir(folder))
                       if name.lower().endswith(IMAGE_SUFFIXES)]
    return photos


def split_people(photos, test_percent: int):
    """(train people's photos, test people's photos, people counts), classes 0-5 only."""
    groups = domains.people(photos)
    test = [g for g in groups if domains.is_test_person(g, test_percent)]
    train = [g for g in groups if not domains.is_test_person(g, test_percent)]
    keep = lambda gs: [(p, d) for g in gs for p, d in g if d in CLASSES]  # noqa: E731
    return keep(train), keep(test), (len(train), len(test))


def classifier(model_dir: str, batch: int = 64):
    """A function: list of encoded images -> predicted classes, through the model's raw-bytes signature."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer.export import IMAGE_BYTES_SIGNATURE  # pylint: disable=import-outside-toplevel

    signature = tf.saved_model.load(model_dir).signatures[IMAGE_BYTES_SIGNATURE]

    def classify(images):
        out = [signature(image_bytes=tf.constant(images[i:i + batch]))["classes"].numpy()
               for i in range(0, len(images), batch)]
        return np.concatenate(out) if out else np.zeros(0, np.int64)
    return classify


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_accuracies(classify, test):
    """{split name: (accuracy, images)} for the in-domain photos, each shift, and drawn hands."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from components.data import synthetic  # pylint: disable=import-outside-toplevel

    labels = np.array([d for _, d in test])
    results = {}

    def score(name, images, truth):
        results[name] = (float(np.mean(classify(images) == truth)), len(truth))

    score("in-domain: held-out people", [_read(p) for p, _ in test], labels)
    for shift in shifts.NAMES:
        score(f"cross-domain: {shift}", [shifts.png_bytes(domains.shifted(p, shift)) for p, _ in test], labels)
    drawn, drawn_labels = synthetic.make_split(DRAWN_HANDS, 7)
    from PIL import Image  # pylint: disable=import-outside-toplevel
    score("cross-domain: drawn hands (synthetic)", [shifts.png_bytes(Image.fromarray(x)) for x in drawn],
          drawn_labels)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="the sign-language-digits Dataset folder")
    p.add_argument("--epochs", type=int, default=30, help="most training epochs (early stopping may end sooner)")
    p.add_argument("--test-percent", type=int, default=20, help="share of the people held out for the test split")
    p.add_argument("--pipeline-root", default=None, help="where the run goes (default: a new temporary folder)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("runner_flags", nargs="*", help="more local_runner flags, after --")
    args = p.parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"error: {args.data}: no such folder (the shared photos are in ../shared/data)")
        return 2
    photos = list_photos(args.data)
    train, test, (n_train_people, n_test_people) = split_people(photos, args.test_percent)
    if not train or not test:
        print(f"error: {args.data}: no photos of 0-5 for {'training' if not train else 'the test split'} "
              f"(digit folders 0-9 of JPEG or PNG photos expected)")
        return 2
    from components.data import startup  # pylint: disable=import-outside-toplevel
    startup.enable()  # before TensorFlow is imported, here and in the runner
    root = args.pipeline_root or tempfile.mkdtemp(prefix="signs-accuracy-")
    data = os.path.join(root, "train-people")  # what the pipeline may see: the other people's photos
    shutil.rmtree(data, ignore_errors=True)
    for path, digit in train:
        os.makedirs(os.path.join(data, str(digit)), exist_ok=True)
        shutil.copyfile(path, os.path.join(data, str(digit), os.path.basename(path)))
    print(f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores")
    print(f"people: {n_train_people} for training and validation ({len(train)} photos of 0-5), "
          f"{n_test_people} held out for the test split ({len(test)} photos)")
    cmd = [sys.executable, "pipeline/local_runner.py", "--data", data, "--classes", "0,1,2,3,4,5",
           "--epochs", str(args.epochs), "--pipeline-root", root, *args.runner_flags]
    print("running: " + " ".join(cmd), flush=True)
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    wall = time.time() - started
    if proc.returncode:
        print(f"error: the pipeline failed (exit {proc.returncode}); see the log under {root}/logs")
        return proc.returncode

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # this process's TensorFlow: no start-up log
    from components.report import runs  # pylint: disable=import-outside-toplevel
    report = runs.latest_run(os.path.join(root, "metadata.sqlite"))
    trainer = next(c for c in report.components if c.name == "Trainer")
    model = trainer.outputs["Model"]
    history = json.load(open(os.path.join(model.uri, "history.json")))
    epochs = history["epochs"]
    results = test_accuracies(classifier(os.path.join(model.uri, "Format-Serving")), test)

    print()
    print(f"validation accuracy (TFMA, {report.example_count} photos of the training people; early stopping, "
          f"the exported epoch and the blessing were chosen on it): {report.accuracy:.4f}")
    print("test accuracy (nothing was chosen on these):")
    width = max(len(name) for name in results)
    for name, (accuracy, n) in results.items():
        print(f"  {name:<{width}}  {accuracy:.4f}  ({n} images)")
    print(f"epochs: {len(epochs)} run, weights of epoch {history['exported_epoch']} exported"
          f"{', stopped early' if history['stopped_early'] else ''}; "
          f"train accuracy of the last epoch {epochs[-1].get('accuracy', float('nan')):.4f}")
    train_seconds = sum(e["seconds"] for e in epochs)
    print(f"wall time: {wall:.0f} s for the whole pipeline ({trainer.seconds:.0f} s Trainer, "
          f"{train_seconds:.0f} s in epochs)")
    print(f"artifacts: {root}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "validation": report.accuracy, "test": results,
                       "people": [n_train_people, n_test_people], "epochs": len(epochs),
                       "exported_epoch": history["exported_epoch"], "runner_flags": args.runner_flags,
                       "wall_s": wall}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
