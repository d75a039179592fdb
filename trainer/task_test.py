"""Tests of the Trainer's device, precision and learning-rate decisions."""

import keras
import pytest

from trainer import task
from trainer.config import TrainConfig


def test_cpu_defaults_without_xla_and_bfloat16_only_with_amx():
    devices = task.resolve_devices(TrainConfig(), gpus=0, amx_bf16=False)
    assert (devices.precision, devices.jit_compile, devices.replicas) == ("float32", False, 1)
    assert not devices.input_autotune
    assert task.resolve_devices(TrainConfig(), gpus=0, amx_bf16=True).precision == "mixed_bfloat16"
    assert task.resolve_devices(TrainConfig(precision="float32"), gpus=0, amx_bf16=True).precision == "float32"


def test_amx_detection_reads_the_cpu_flags():
    flags = [line for line in open("/proc/cpuinfo") if line.startswith("flags")][:1]
    assert task.cpu_has_amx_bf16() == bool(flags and " amx_bf16" in flags[0])


def test_the_float32_copy_has_the_same_weights_and_answers():
    config = TrainConfig()
    with task.dtype_policy("mixed_bfloat16"):
        model = task.ResNet50(classes=6)
    copy = task.float32_copy(model, config)
    assert copy.get_layer("res3b_branch2b").compute_dtype == "float32"
    assert all((a == b).all() for a, b in zip(model.get_weights(), copy.get_weights()))
    x = keras.random.uniform((2, 64, 64, 3), seed=3)
    diff = keras.ops.max(keras.ops.abs(model(x, training=False) - copy(x, training=False)))
    assert float(diff) < 0.05  # bfloat16 rounding only


def test_a_gpu_gets_mixed_precision_and_xla_unless_told_otherwise():
    devices = task.resolve_devices(TrainConfig(), gpus=1)
    assert (devices.precision, devices.jit_compile) == ("mixed_float16", True)
    devices = task.resolve_devices(TrainConfig(precision="float32", jit_compile="off"), gpus=1)
    assert (devices.precision, devices.jit_compile) == ("float32", False)


def _rates(schedule, steps):
    return [float(keras.ops.convert_to_numpy(schedule(s))) if callable(schedule) else schedule for s in steps]


def test_warmup_then_cosine_to_one_percent():
    config = TrainConfig(epochs=10, learning_rate=1e-3, warmup_epochs=1)
    schedule = task.learning_rate(config, steps_per_epoch=10)
    start, end_of_warmup, middle, last = _rates(schedule, [0, 10, 55, 100])
    assert start == 0.0 and end_of_warmup == pytest.approx(1e-3)
    assert 1e-5 < middle < 1e-3 and last == pytest.approx(1e-5)


def test_constant_schedule_and_replica_scaling():
    config = TrainConfig(epochs=4, learning_rate=1e-3, lr_schedule="constant", warmup_epochs=0)
    assert _rates(task.learning_rate(config, 10), [0, 39]) == pytest.approx([1e-3, 1e-3])
    warm = task.learning_rate(config.replace(warmup_epochs=1), 10, replicas=2)
    assert _rates(warm, [5, 10, 39]) == pytest.approx([1e-3, 2e-3, 2e-3])


def test_dtype_policy_is_restored():
    before = keras.config.dtype_policy().name
    with task.dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
