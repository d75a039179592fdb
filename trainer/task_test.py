"""Tests of the Trainer's device, precision and learning-rate decisions."""

import keras
import pytest

from trainer import task
from trainer.config import TrainConfig


def test_cpu_defaults_are_float32_without_xla():
    devices = task.resolve_devices(TrainConfig(), gpus=0)
    assert (devices.precision, devices.jit_compile, devices.replicas) == ("float32", False, 1)


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
