"""The Trainer's GPU code path, run on the CPU: MirroredStrategy over 2 replicas, and mixed_float16.

No GPU is needed and nothing in TF or Keras is replaced:

- the multi-replica test splits the one physical CPU into 2 logical CPU devices (which must happen
  before TF sets up its devices, so it runs in a child process) and calls the real `task.train`
  with `gpus=2`: `resolve_devices` then takes its multi-GPU branch, and the MirroredStrategy it
  makes with no device list mirrors over every logical device, here the 2 CPUs, as it would over
  2 GPUs. The child records what it sees and prints it as JSON for the test to check;
- the mixed-precision test calls `task.train` with `gpus=1`, where "auto" precision resolves to
  mixed_float16 as on a GPU (XLA off: compiling the ResNet for the CPU is a different question).

Each test builds and traces the real ResNet50 (the trace of the first step costs ~40 s on 2 cores).
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from components.validation.schema import signs_schema
from trainer import input_pipeline, task
from components.training.train_config import TrainConfig
from trainer.input_pipeline_test import N, records  # noqa: F401  (the fixture: N small real records)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = "GPU_PATH_RESULT "

# Runs in a child process: argv[1] is a JSON dict of records, checkpoint dir, run dir and config.
MIRRORED_CHILD = r'''
import hashlib, inspect, json, sys
import tensorflow as tf

tf.config.set_visible_devices([], "GPU")  # on a machine with GPUs, the strategy would take those
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras
import numpy as np
from components.validation.schema import signs_schema
from trainer import checkpoints, input_pipeline, task
from components.training.train_config import TrainConfig

args = json.loads(sys.argv[1])
config = TrainConfig.from_dict(args["config"])
out = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}


def iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def digest(model):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def replica_copies(model):
    """How many weights have one copy per replica, and which (trainable or not) differ between them."""
    mirrored, differ = 0, {"trainable": [], "non_trainable": []}
    for v in model.weights:
        copies = getattr(v.value, "values", None)
        if isinstance(v.value, tf.distribute.DistributedValues) and copies and len(copies) == 2:
            mirrored += 1
            if not np.array_equal(copies[0].numpy(), copies[1].numpy()):
                differ["trainable" if v.trainable else "non_trainable"].append(v.path)
    return {"weights": len(model.weights), "mirrored": mirrored, "differ": differ}


# Observers on the project's own functions: each records its arguments or result and calls
# through unchanged.
batches = []
real_make_dataset = input_pipeline.make_dataset
def make_dataset(*a, **kw):
    bound = inspect.signature(real_make_dataset).bind(*a, **kw).arguments
    batches.append({"training": bound["training"], "batch_size": bound["batch_size"]})
    return real_make_dataset(*a, **kw)
input_pipeline.make_dataset = make_dataset

restored = {}
real_restore = checkpoints.TrainingState.restore
def restore(self, model):
    start = real_restore(self, model)
    if start:
        restored.update(epoch=start, iterations=iterations(model), digest=digest(model),
                        strategy=type(tf.distribute.get_strategy()).__name__,
                        copies=replica_copies(model))
    return start
checkpoints.TrainingState.restore = restore

schema = signs_schema(range(config.num_classes))
accessor = input_pipeline.records_accessor()


def run(cfg):
    batches.clear()
    model, state, devices = task.train(cfg, accessor, [args["records"]], [args["records"]], schema,
                                       args["run_dir"], args["checkpoint_dir"], gpus=2)
    return {"devices": devices.describe(), "replicas_in_sync": devices.strategy.num_replicas_in_sync,
            "worker_devices": list(devices.strategy.extended.worker_devices),
            "batches": list(batches), "history": state.history, "resumed_from": state.resumed_from,
            "iterations": iterations(model), "digest": digest(model), "copies": replica_copies(model),
            "optimizer": type(model.optimizer).__name__}


out["first"] = run(config)                           # a run "killed" after its first epoch
out["resumed"] = run(config.replace(epochs=2))       # the re-run finds its checkpoint
out["restored"] = restored
print("''' + RESULT + r'''" + json.dumps(out), flush=True)
'''


@pytest.mark.slow
def test_mirrored_strategy_over_two_replicas_trains_scales_and_resumes(records, tmp_path):  # noqa: F811
    # float32 and no XLA: the multi-GPU defaults cost minutes more on the CPU, and what is checked
    # here is the strategy. No best-weights restore: it would put back epoch 1's optimizer state too.
    config = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, lr_schedule="constant", warmup_epochs=0,
                         precision="float32", jit_compile="off", early_stopping_patience=0,
                         restore_best_weights=False)
    args = {"records": records, "checkpoint_dir": str(tmp_path / "ckpt"), "run_dir": str(tmp_path / "run"),
            "config": config.to_dict()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", MIRRORED_CHILD, json.dumps(args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=540)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT)]
    assert proc.returncode == 0 and lines, f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    out = json.loads(lines[-1][len(RESULT):])
    first, resumed, restored = out["first"], out["resumed"], out["restored"]

    # The multi-GPU branch of resolve_devices: a MirroredStrategy over both devices.
    assert out["logical_cpus"] == 2
    assert first["devices"] == {"gpus": 2, "replicas": 2, "precision": "float32", "jit_compile": False,
                                "strategy": "MirroredStrategy"}
    assert first["replicas_in_sync"] == 2
    assert [d.rsplit("/", 1)[-1] for d in first["worker_devices"]] == ["device:CPU:0", "device:CPU:1"]
    # Every weight lives on both replicas, and the all-reduce of the gradients kept the trainable
    # copies identical. BatchNormalization's moving statistics are updated by each replica from its
    # own half of the batch (Keras's default, unsynchronized BN), so only those may differ.
    assert first["copies"]["mirrored"] == first["copies"]["weights"] > 0
    assert first["copies"]["differ"]["trainable"] == []
    assert all(p.endswith(("/moving_mean", "/moving_variance")) for p in first["copies"]["differ"]["non_trainable"])

    # The global batch is the per-replica batch x 2 replicas, for both splits ...
    global_batch = config.batch_size * 2
    assert first["batches"] == [{"training": True, "batch_size": global_batch},
                                {"training": False, "batch_size": global_batch}]
    # ... and an epoch took N / global batch steps. Keras counts one more optimizer iteration at
    # the end of an epoch of unknown length (the call that finds the data exhausted), so allow it.
    steps = input_pipeline.train_steps(N, global_batch)  # whole batches
    assert steps <= first["iterations"] <= steps + 1
    # The learning rate is the configured rate x 2 replicas (a constant schedule, no warm-up).
    assert [e["learning_rate"] for e in first["history"]] == pytest.approx([config.learning_rate * 2])
    assert all(math.isfinite(first["history"][0][k]) for k in ("loss", "val_loss"))

    # The re-run restores the checkpoint inside the strategy's scope: the optimizer's iteration
    # count and the weights are those saved, still mirrored and in sync, and it trains on.
    assert restored["epoch"] == 1 and restored["strategy"] == "MirroredStrategy"
    assert restored["iterations"] == first["iterations"]
    assert restored["digest"] == first["digest"]
    assert restored["copies"]["mirrored"] == restored["copies"]["weights"]
    assert restored["copies"]["differ"] == {"trainable": [], "non_trainable": []}  # one value to all replicas
    assert resumed["resumed_from"] == 1
    assert [e["epoch"] for e in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == first["history"][0]
    assert steps <= resumed["iterations"] - restored["iterations"] <= steps + 1
    assert resumed["digest"] != first["digest"] and resumed["copies"]["differ"]["trainable"] == []
    assert resumed["history"][1]["learning_rate"] == pytest.approx(config.learning_rate * 2)
    assert all(math.isfinite(resumed["history"][1][k]) for k in ("loss", "val_loss"))


@pytest.mark.slow
def test_mixed_float16_as_on_a_gpu(records, tmp_path):  # noqa: F811
    # "auto" precision on a GPU; XLA off (its CPU compile of the ResNet is not what this checks).
    config = TrainConfig(epochs=1, batch_size=2, lr_schedule="constant", warmup_epochs=0, augment=False,
                         jit_compile="off", tensorboard=False, early_stopping_patience=0)
    before = keras.config.dtype_policy().name
    checkpoint_dir = str(tmp_path / "ckpt")
    model, state, devices = task.train(config, input_pipeline.records_accessor(), [records], [records],
                                       signs_schema(range(6)), str(tmp_path / "run"), checkpoint_dir, gpus=1)
    assert devices.precision == "mixed_float16"
    assert keras.config.dtype_policy().name == before  # train() puts the global policy back

    # Half-precision layers over float32 variables, and a float32 softmax.
    assert model.dtype_policy.name == "mixed_float16"
    assert model.get_layer("res3b_branch2b").compute_dtype == "float16"
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.get_layer("fc6").compute_dtype == "float32"
    images = next(iter(input_pipeline.make_dataset(input_pipeline.records_accessor(), [records], signs_schema(range(6)), 4,
                                         training=False, config=config, n_examples=N)))[0]
    probs = model(images, training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    assert np.allclose(keras.ops.convert_to_numpy(probs).sum(axis=1), 1.0, atol=1e-3)

    # Keras wraps the optimizer in a dynamic loss scale. Its first steps overflow float16 and are
    # skipped while the scale halves from 2**15; by the end of the epoch some steps have applied.
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
    scale = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
    applied = int(keras.ops.convert_to_numpy(optimizer.iterations))
    steps = input_pipeline.train_steps(N, config.batch_size)
    assert scale < optimizer.initial_scale and 0 < applied <= steps
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert math.isfinite(state.history[-1]["loss"]) and math.isfinite(state.history[-1]["val_loss"])

    # A re-run of the same training resumes from the checkpoint (its epochs are done: no fit), with
    # the loss scale and the applied-step count of the wrapped optimizer as they were.
    again, again_state, _ = task.train(config, input_pipeline.records_accessor(), [records], [records],
                                       signs_schema(range(6)), str(tmp_path / "run"), checkpoint_dir, gpus=1)
    assert again_state.resumed_from == 1 and isinstance(again.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(keras.ops.convert_to_numpy(again.optimizer.dynamic_scale)) == scale
    assert int(keras.ops.convert_to_numpy(again.optimizer.iterations)) == applied
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
