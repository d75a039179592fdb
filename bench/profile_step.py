"""Where one training step of the seed's ResNet50 spends its time on this CPU, op type by op type.

    python bench/profile_step.py [--batch-size 32] [--steps 5] [--optimizer fused|keras] [--json out.json]

It builds the model as the Trainer does (`trainer.task.build_model`, float32 unless --precision),
runs warm-up steps on random images, then records `--steps` steps with TensorFlow's profiler
(`tf.profiler.experimental`) and reads the trace it writes (the XPlane protobuf): every TF op
executed on the host, by op type, summed over the steps. It prints the CPU model, the step's wall
time, and the op types by share of the op time, grouped into convolution (forward and the two
backward kernels), batch norm, elementwise, the optimizer, layout conversions (oneDNN's
`_MklToTf`/reorders), and the rest.

Run it under `ONEDNN_MAX_CPU_ISA=AVX2` on a CPU with AVX-512 or AMX to see the AVX2 code paths.
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

from bench.machine import cpu_model
from components.data import startup

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

# Op type -> group; matched on the op type with oneDNN's "_Mkl"/"_Fused" prefixes removed.
GROUPS = (
    ("convolution, backward (filter)", ("Conv2DBackpropFilter",)),
    ("convolution, backward (input)", ("Conv2DBackpropInput",)),
    ("convolution, forward", ("Conv2D", "FusedConv2D", "NativeConv2D")),
    ("batch norm", ("FusedBatchNorm", "BatchNorm", "Mean", "SquaredDifference", "Rsqrt", "Moments")),
    ("optimizer", ("ResourceApply", "AssignVariable", "AssignAdd", "AssignSub", "ReadVariableOp")),
    ("layout conversion", ("MklToTf", "ToTf", "Reorder", "Transpose")),
    ("pooling", ("MaxPool", "AvgPool")),
    ("elementwise", ("Mul", "Add", "Sub", "Relu", "BiasAdd", "Sum", "RealDiv", "Square", "Sqrt",
                     "Neg", "Maximum", "Select", "Cast", "Fill", "ZerosLike", "Tile", "Reshape")),
)


def group_of(op_type: str) -> str:
    bare = re.sub(r"^_(MklNative|Mkl)?", "", op_type)
    for group, prefixes in GROUPS:
        if any(bare.startswith(p) or bare == p for p in prefixes):
            return group
    return "other"


def read_trace(logdir: str):
    """Sums the host's TF op events of the profile in `logdir`: {op type: (seconds, count)}."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel

    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        raise SystemExit(f"error: the profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TF op events are named "<node name>:<op type>"; the rest are runtime/Python spans.
                if ":" not in name or "::" in name or name.startswith(("$", "tf_", "Iterator")):
                    continue
                op_type = name.rsplit(":", 1)[1]
                if not op_type or not (op_type[0].isupper() or op_type.startswith("_")):
                    continue
                totals[op_type][0] += event.duration_ps / 1e12
                totals[op_type][1] += 1
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps profiled, after the warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before profiling")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--bn", choices=("keras", "fused"), default=None,
                        help="BatchNormalization kernel (default: the Trainer's)")
    parser.add_argument("--optimizer", choices=("fused", "keras"), default="fused",
                        help="fused: the Trainer's FusedAdam (trainer/optimizer.py); keras: Keras's own Adam")
    parser.add_argument("--top", type=int, default=15, help="op types listed")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)


    startup.enable()  # as the entry points do; TF_ENABLE_ONEDNN_OPTS=0 profiles Eigen's kernels
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel

    from trainer import task  # pylint: disable=import-outside-toplevel
    from components.training.train_config import TrainConfig  # pylint: disable=import-outside-toplevel

    changes = {"precision": args.precision, "jit_compile": "off"}
    if args.bn:
        changes["fused_batch_norm"] = args.bn == "fused"
    config = TrainConfig().replace(**{k: v for k, v in changes.items()
                                      if k in TrainConfig.__dataclass_fields__})
    devices = task.resolve_devices(config, gpus=0)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; ONEDNN_MAX_CPU_ISA="
          f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '(not set)')}; oneDNN kernels "
          f"{'on' if _pywrap_util_port.IsMklEnabled() else 'off'}; precision {devices.precision}; "
          f"batch {args.batch_size}; optimizer {args.optimizer}", flush=True)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 64, 64, 3), dtype=np.float32)
    y = rng.integers(0, 6, args.batch_size)
    with task.dtype_policy(devices.precision):
        model = task.build_model(config, devices, steps_per_epoch=100)
        if args.optimizer == "keras":  # the same learning rate, through Keras's Adam
            import keras  # pylint: disable=import-outside-toplevel
            model.compile(optimizer=keras.optimizers.Adam(model.optimizer._learning_rate),  # pylint: disable=protected-access
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        step = (time.perf_counter() - start) / args.steps
        logdir = tempfile.mkdtemp(prefix="profile-")
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()

    totals = read_trace(logdir)
    op_time = sum(t for t, _ in totals.values()) / args.steps
    print(f"first step (builds the graph): {first:.1f} s; a step: {step * 1000:.0f} ms "
          f"({args.batch_size / step:.1f} images/s); op time in the trace: {op_time * 1000:.0f} ms a step "
          "(ops on both cores overlap, so it can exceed the step)")
    groups = collections.defaultdict(float)
    for op_type, (seconds, _) in totals.items():
        groups[group_of(op_type)] += seconds / args.steps
    print("\nby group:")
    for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:34s} {seconds * 1000:8.1f} ms  {seconds / op_time:6.1%}")
    print(f"\ntop {args.top} op types:")
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])
    for op_type, (seconds, count) in ranked[:args.top]:
        print(f"  {op_type:34s} {seconds / args.steps * 1000:8.1f} ms  {seconds / args.steps / op_time:6.1%}"
              f"  ({count // args.steps} a step)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "onednn": _pywrap_util_port.IsMklEnabled(), "batch_size": args.batch_size, "step_s": step, "first_step_s": first,
                       "groups_ms": {g: s * 1000 for g, s in groups.items()},
                       "ops_ms": {o: t / args.steps * 1000 for o, (t, _) in totals.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
