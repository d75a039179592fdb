"""Times the Trainer's input pipeline plus model against a plain Keras fit on in-memory arrays.

    python bench/train_throughput.py [--images 1024] [--epochs 3] [--batch-size 32] [--sweep]

It writes N synthetic SIGNS images as ExampleGen writes them (gzip TFRecords of tf.Example with
PNG bytes), then trains the seed's ResNet50 in two arms, each in a fresh process (so each gets its
own TensorFlow thread pools and environment), with the same model, optimizer and batch size:

- `baseline`: the seed's way: `model.fit(x, y)` on float32 NumPy arrays already in memory;
- `trainer`: the Trainer's way: TFX's data accessor over the TFRecords, PNG decode, cache,
  shuffle, batch, augmentation (the Trainer's default), prefetch; the model compiled by
  `trainer.task.build_model` with the devices `trainer.task.resolve_devices` picks (on a CPU
  with AMX-BF16 that is mixed_bfloat16);
- `trainer, float32`: the same in float32, which isolates what the input pipeline costs.

The baseline and the trainer run `--repeats` times, alternating, and each keeps its best run.

It prints the CPU model and core count, then images per second of both arms (the median of the
epochs after the first, whose time includes building the graph), their ratio, and the fraction of
this machine's fp32 matrix-multiply rate, measured here on a large float32 matmul (1.85 GFLOP per
training image: forward and backward of one 64x64 image).
`--sweep` adds trainer arms with the CPU settings that were candidates for more speed: thread
pools, oneDNN off, bfloat16, XLA, steps per execution and a larger batch.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.machine import cpu_model
from components.data import startup

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

GFLOP_PER_IMAGE = 1.85  # forward + backward of one 64x64 image through the seed's ResNet50
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, environment, TrainConfig changes): the trainer arms of --sweep. "_autotune" and "_keras_bn"
# are not TrainConfig fields: the first turns tf.data's autotuning on, as the Trainer has it on
# GPUs; the second builds the model with Keras's own BatchNormalization instead of the fused one.
SWEEP = (
    ("trainer, no augmentation", {}, {"augment": False}),
    ("trainer, tf.data autotune on", {}, {"_autotune": True}),
    ("trainer, 1 inter-op thread", {"TF_NUM_INTEROP_THREADS": "1"}, {}),
    ("trainer, oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    ("trainer, mixed_bfloat16", {}, {"precision": "mixed_bfloat16"}),
    ("trainer, XLA", {}, {"jit_compile": "on"}),
    ("trainer, 4 steps per execution", {}, {"steps_per_execution": 4}),
    ("trainer, batch 64", {}, {"batch_size": 64}),
    ("trainer, batch 16", {}, {"batch_size": 16}),
    ("trainer, batch 128", {}, {"batch_size": 128}),
    ("trainer, mixed_bfloat16, batch 128", {}, {"precision": "mixed_bfloat16", "batch_size": 128}),
    ("trainer, Keras's own batch norm", {}, {"_keras_bn": True}),
    ("trainer, float32, Keras's own batch norm", {}, {"precision": "float32", "_keras_bn": True}),
)


def write_records(workdir: str, n: int, seed: int = 0) -> str:
    """Writes N synthetic images as ExampleGen's train split; returns its file pattern."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    from components.data.example_gen import to_example  # pylint: disable=import-outside-toplevel

    split = os.path.join(workdir, f"records-{n}", "Split-train")
    path = os.path.join(split, "data_tfrecord-00000-of-00001.gz")
    if not os.path.exists(path):
        os.makedirs(split, exist_ok=True)
        x, y = synthetic.make_split(n, seed)
        with tf.io.TFRecordWriter(path + ".tmp", "GZIP") as writer:
            for i in range(n):
                writer.write(to_example(x[i], int(y[i]), f"synthetic:{i}").SerializeToString())
        os.replace(path + ".tmp", path)
    return os.path.join(split, "*")


def epoch_timer():
    """A Keras callback whose `seconds` lists each epoch's wall time."""
    import keras  # pylint: disable=import-outside-toplevel

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self._start = [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def run_arm(arm: str, pattern: str, n: int, epochs: int, changes: dict) -> dict:
    """Trains one arm in this process; returns its epoch times."""

    if arm != "baseline":  # the baseline keeps TensorFlow's own choice, as a plain script gets
        startup.enable()
    import keras  # pylint: disable=import-outside-toplevel

    from components.validation.schema import signs_schema  # pylint: disable=import-outside-toplevel
    from trainer import input_pipeline, task  # pylint: disable=import-outside-toplevel
    from components.training.train_config import TrainConfig  # pylint: disable=import-outside-toplevel
    from trainer.resnet import ResNet50  # pylint: disable=import-outside-toplevel

    changes = dict(changes)
    autotune = changes.pop("_autotune", None)  # not a TrainConfig field: the bench's own switch
    if changes.pop("_keras_bn", False):  # the bench's own switch: the model with Keras's BatchNormalization
        from trainer import resnet as model_lib  # pylint: disable=import-outside-toplevel
        model_lib.BatchNormalization = keras.layers.BatchNormalization
    config = TrainConfig(epochs=epochs).replace(**changes)
    keras.utils.set_random_seed(0)
    times = epoch_timer()
    if arm == "baseline":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        images, labels = [], []
        for batch in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), "GZIP").batch(256):
            parsed = tf.io.parse_example(batch, input_pipeline.FEATURES)
            images.append(input_pipeline.decode_png_batch(parsed["image"]).numpy())
            labels.append(parsed["label"].numpy())
        x, y = np.concatenate(images), np.concatenate(labels)
        model = ResNet50(classes=6, fused_bn=False)  # the seed's layers, Keras's own batch norm
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=False)
        model.fit(x, y, batch_size=config.batch_size, epochs=epochs, callbacks=[times], verbose=0)
        return {"seconds": times.seconds, "batch_size": config.batch_size, "onednn": onednn_on()}
    devices = task.resolve_devices(config)
    ds = input_pipeline.make_dataset(input_pipeline.records_accessor(), [pattern], signs_schema(range(6)),
                           config.batch_size * devices.replicas, training=True, config=config, n_examples=n,
                           autotune=devices.input_autotune if autotune is None else autotune)
    with task.dtype_policy(devices.precision), devices.strategy.scope():
        model = task.build_model(config, devices, steps_per_epoch=input_pipeline.train_steps(n, config.batch_size))
        model.fit(ds, epochs=epochs, callbacks=[times], verbose=0)
    return {"seconds": times.seconds, "batch_size": config.batch_size, "devices": devices.describe(),
            "onednn": onednn_on()}


def onednn_on() -> bool:
    """Whether this process's TensorFlow runs its oneDNN kernels."""
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel
    return bool(_pywrap_util_port.IsMklEnabled())


def spawn(name: str, arm: str, args, env: dict, changes: dict) -> dict:
    """Runs one arm in a fresh process with `env` added; returns its result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--arm", arm, "--images", str(args.images),
           "--epochs", str(args.epochs), "--workdir", args.workdir,
           "--changes", json.dumps(dict(changes, batch_size=changes.get("batch_size", args.batch_size)))]
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
                          capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"error: arm '{name}' failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    steady = result["seconds"][1:] or result["seconds"]
    result.update(name=name, env=env, changes=changes,
                  images_per_s=args.images / statistics.median(steady),
                  first_epoch_s=result["seconds"][0])
    return result


def measured_matmul_gflops(n: int = 2048, repeats: int = 8) -> float:
    """This machine's float32 rate on a large matrix multiply (all cores), best of `repeats`."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a  # pylint: disable=pointless-statement
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def avx2_matmul_gflops() -> float:
    """`measured_matmul_gflops` with NumPy's OpenBLAS held to its AVX2 (Haswell) kernels."""
    code = "from bench import train_throughput; print(train_throughput.measured_matmul_gflops())"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OPENBLAS_CORETYPE="Haswell"),
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def plan_arms(sweep: bool, only: str = "", as_avx2: bool = False):
    """The arms to time, as (name, "baseline" or "trainer", environment, TrainConfig changes)."""
    arms = [("baseline: fit on NumPy arrays", "baseline", {}, {}), ("trainer", "trainer", {}, {}),
            # the input pipeline's own cost: the trainer at the baseline's precision
            ("trainer, float32", "trainer", {}, {"precision": "float32"})]
    if sweep:
        arms += [(name, "trainer", env, changes) for name, env, changes in SWEEP if only in name]
    if as_avx2:
        # TF 2.16 turns oneDNN on by itself only with AVX-512 VNNI/BF16, AVX-VNNI or AMX
        # (components/data/startup.py), and the Trainer picks bfloat16 only with AMX-BF16: on an AVX2 CPU the
        # baseline gets TF's own kernels and the Trainer float32 (the same as its "trainer, float32").
        arms = [(name, arm, dict(env, ONEDNN_MAX_CPU_ISA="AVX2",
                                 **({"TF_ENABLE_ONEDNN_OPTS": "0"} if arm == "baseline" else {})),
                 changes if arm == "baseline" else dict({"precision": "float32"}, **changes))
                for name, arm, env, changes in arms if name != "trainer, float32"]
    return arms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=1024, help="synthetic training images")
    p.add_argument("--epochs", type=int, default=3, help="epochs per arm (the first is not counted)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step in both arms")
    p.add_argument("--repeats", type=int, default=2,
                   help="runs of the baseline and of the trainer, alternating; each keeps its best")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="this machine's fp32 rate to compare with (default: measured on a float32 matmul)")
    p.add_argument("--sweep", action="store_true", help="also time the CPU candidates in SWEEP")
    p.add_argument("--only", default="", help="with --sweep: only the candidates whose name has this")
    p.add_argument("--as-avx2", action="store_true",
                   help="on a CPU with AVX-512 or AMX, time what a CPU with AVX2 alone gets: oneDNN "
                        "limited to its AVX2 code (ONEDNN_MAX_CPU_ISA=AVX2), the baseline on TensorFlow's "
                        "own kernels (TF's default there) and the Trainer in float32 (its default there)")
    p.add_argument("--workdir", default="/tmp/signs-train-bench", help="where the records go")
    p.add_argument("--arm", choices=("baseline", "trainer"), help=argparse.SUPPRESS)
    p.add_argument("--changes", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first epoch builds the graph and is not counted")

    if args.arm:
        pattern = os.path.join(args.workdir, f"records-{args.images}", "Split-train", "*")
        result = run_arm(args.arm, pattern, args.images, args.epochs, json.loads(args.changes))
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    started = time.time()
    peak_gflops = args.peak_gflops or (avx2_matmul_gflops() if args.as_avx2 else measured_matmul_gflops())
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; float32 matmul: {peak_gflops:.0f} GFLOPS"
          f"{'' if args.peak_gflops else ' (measured)'}", flush=True)
    print(f"writing {args.images} synthetic images as gzip TFRecords under {args.workdir} ...", flush=True)
    write_records(args.workdir, args.images)
    if args.as_avx2:
        print("as an AVX2 CPU: ONEDNN_MAX_CPU_ISA=AVX2 for every arm, TF_ENABLE_ONEDNN_OPTS=0 for the "
              "baseline, float32 for the Trainer", flush=True)
    arms = plan_arms(args.sweep, args.only, args.as_avx2)
    # The baseline and the trainer alternate `--repeats` times, and each keeps its best run: on a
    # noisy machine the best of several is the figure least disturbed by other load.
    runs = {}
    order = arms[:2] * args.repeats + arms[2:]
    for name, arm, env, changes in order:
        print(f"timing {name} ({args.epochs} epochs of {args.images} images) ...", flush=True)
        result = spawn(name, arm, args, env, changes)
        print(f"  {result['images_per_s']:.1f} images/s", flush=True)
        best = runs.get(name)
        result["all_images_per_s"] = (best["all_images_per_s"] if best else []) + [result["images_per_s"]]
        if best is None or result["images_per_s"] > best["images_per_s"]:
            runs[name] = result
        else:
            best["all_images_per_s"] = result["all_images_per_s"]
    results = [runs[name] for name, _, _, _ in arms]

    base = results[0]["images_per_s"]
    print(f"\nThe seed's ResNet50, {args.images} images, batch {args.batch_size} unless named; "
          f"images/s is the median of epochs 2..{args.epochs}, the best of {args.repeats} runs for "
          f"the first two arms.")
    print(f"{'arm':36} {'images/s':>9} {'vs baseline':>12} {'of matmul rate':>15} {'epoch 1 (s)':>12} {'oneDNN':>7}")
    for r in results:
        peak = r["images_per_s"] * GFLOP_PER_IMAGE / peak_gflops
        print(f"{r['name']:36} {r['images_per_s']:9.1f} {r['images_per_s'] / base:11.2f}x "
              f"{peak:14.0%} {r['first_epoch_s']:12.1f} {'on' if r['onednn'] else 'off':>7}")
    trainer, precision = results[1]["images_per_s"], results[1]["devices"]["precision"]
    float32 = "" if args.as_avx2 else f"; in float32 like the baseline: {results[2]['images_per_s'] / base:.2f}"
    print(f"\nratio trainer / baseline: {trainer / base:.2f} (the Trainer's defaults: {precision}; "
          f"must be >= 1.0, goal 1.5){float32}")
    print(f"total wall time {time.time() - started:.0f} s")
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
