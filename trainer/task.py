"""The TFX Trainer entry point: `run_fn`, named by the dotted string 'trainer.task.run_fn'.

`run_fn` reads the TrainConfig from custom_config, sets up the devices (every GPU through a
distribution strategy, mixed precision and XLA there; plain float32 on the CPU), reads both splits
through TFX's data accessor, trains with a warm-up + cosine learning rate, early stopping on the
eval split and best-weights restore, checkpoints every epoch where a re-run of the same training
resumes, and exports the model with its history, TensorBoard logs and summary.
"""

import contextlib
import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from components.data import storage
from components.push import canary
from trainer import budget, calibration, checkpoints, export, input_pipeline
from components.training.train_config import HISTORY_FILE, TrainConfig
from trainer.resnet import ResNet50
from trainer.optimizer import FusedAdam

SUMMARY_FILE = "model_summary.txt"  # in the ModelRun artifact
TENSORBOARD_DIR = "tensorboard"  # in the ModelRun artifact
MONITOR = "val_accuracy"  # what early stopping and best-weights restore watch
CALIBRATION_IMAGES = 256  # training images whose batch-norm statistics each validation uses


@dataclasses.dataclass
class Devices:
    """Where and how a run trains, resolved from the config's "auto" settings."""

    strategy: Any
    replicas: int
    gpus: int
    precision: str
    jit_compile: bool

    @property
    def input_autotune(self) -> bool:
        """tf.data autotuning: for GPUs; on the CPU it takes cycles from the model."""
        return self.gpus > 0

    def describe(self) -> Dict[str, Any]:
        return {"gpus": self.gpus, "replicas": self.replicas, "precision": self.precision,
                "jit_compile": self.jit_compile, "strategy": type(self.strategy).__name__}


def cpu_has_amx_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX, Sapphire Rapids on).

    Reads the "flags" lines of `cpuinfo_path` (Linux's /proc/cpuinfo format); False where the
    file cannot be read (not Linux).
    """
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "flags" and "amx_bf16" in value.split():
                    return True
    except OSError:
        pass
    return False


def resolve_devices(config: TrainConfig, gpus: Optional[int] = None,
                    amx_bf16: Optional[bool] = None) -> Devices:
    """Resolves the config's device settings against the hardware this process sees.

    With GPUs: MirroredStrategy over all of them (2 or more), mixed_float16 and XLA, unless the
    config says otherwise. On the CPU: the default strategy and no XLA (XLA is slower there), in
    mixed_bfloat16 where the CPU has AMX-BF16 (oneDNN runs the convolutions on AMX tiles) and
    float32 elsewhere. bench/README.md, "Training throughput on the CPU", has the figures.
    """
    if gpus is None:
        gpus = len(tf.config.list_physical_devices("GPU"))
    if amx_bf16 is None:
        amx_bf16 = cpu_has_amx_bf16()
    if gpus >= 2 and config.distribute == "auto":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    precision = config.precision
    if precision == "auto":
        precision = "mixed_float16" if gpus else ("mixed_bfloat16" if amx_bf16 else "float32")
    jit = config.jit_compile == "on" or (config.jit_compile == "auto" and gpus > 0)
    return Devices(strategy, strategy.num_replicas_in_sync, gpus, precision, jit)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets Keras's global dtype policy for the block, restoring the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def learning_rate(config: TrainConfig, steps_per_epoch: int, replicas: int = 1):
    """Adam's learning rate: linear warm-up, then constant or cosine-decayed to 1% by the end.

    The peak is `config.learning_rate` x replicas (the batch grows with the replicas).
    The decay's end is a variable: a time budget (`budget.TimeBudget`) moves it to the last epoch
    that fits.
    """
    peak = config.learning_rate * replicas
    total = max(1, config.epochs * steps_per_epoch)
    warmup = max(0, min(int(config.warmup_epochs * steps_per_epoch), total - 1))
    alpha = 1.0 if config.lr_schedule == "constant" else 0.01  # constant: "decays" to 100%
    return budget.WarmupCosine(peak, warmup_steps=warmup, total_steps=total, alpha=alpha)


def resnet50(config: TrainConfig) -> keras.Model:
    """The seed's ResNet50 at the Trainer's input shape, built with the config's model settings."""
    return ResNet50(input_shape=input_pipeline.IMAGE_SHAPE, classes=config.num_classes,
                    bn_momentum=config.bn_momentum, zero_init_residual=config.zero_init_residual,
                    standardize=config.standardize)


def build_model(config: TrainConfig, devices: Devices, steps_per_epoch: int) -> keras.Model:
    """The seed's ResNet50, compiled for the devices (call inside `dtype_policy` and the strategy)."""
    model = resnet50(config)
    optimizer = FusedAdam(learning_rate(config, steps_per_epoch, devices.replicas),
                          weight_decay=config.weight_decay or None)
    if config.soft_labels():  # one-hot labels, smoothed or mixed (input_pipeline.make_dataset)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss, metric = "sparse_categorical_crossentropy", "accuracy"
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric],
                  jit_compile=devices.jit_compile, steps_per_execution=config.steps_per_execution)
    return model


def train(config: TrainConfig, data_accessor, train_files: List[str], eval_files: List[str], schema,
          model_run_dir: str, checkpoint_dir: Optional[str] = None, gpus: Optional[int] = None):
    """Trains the seed's ResNet50; returns (model, TrainingState, Devices).

    Args:
      config: the run's TrainConfig.
      data_accessor: TFX's data accessor (`fn_args.data_accessor`).
      train_files: file patterns of the train split.
      eval_files: file patterns of the eval split (early stopping and best weights watch it).
      schema: the schema the records were validated against.
      model_run_dir: the ModelRun artifact's directory (TensorBoard logs).
      checkpoint_dir: where this training's resumable state lives; None disables checkpoints.
      gpus: GPUs to use; None = all this process sees.
    """
    devices = resolve_devices(config, gpus)
    logging.info("devices: %s", devices.describe())
    n_train, n_eval = input_pipeline.count_records(train_files), input_pipeline.count_records(eval_files)
    global_batch = config.batch_size * devices.replicas
    steps_per_epoch = input_pipeline.train_steps(n_train, global_batch)
    logging.info("train split: %d examples, %d steps of %d an epoch; eval split: %d examples",
                 n_train, steps_per_epoch, global_batch, n_eval)
    train_ds = input_pipeline.make_dataset(data_accessor, train_files, schema, global_batch, training=True,
                                 config=config, n_examples=n_train, autotune=devices.input_autotune)
    eval_ds = input_pipeline.make_dataset(data_accessor, eval_files, schema, global_batch, training=False,
                                config=config, n_examples=n_eval, autotune=devices.input_autotune)
    # Un-augmented training images whose statistics each validation's batch norm uses (one replica).
    calibration_images = None
    if config.precise_bn and devices.replicas == 1:
        calibration_ds = input_pipeline.make_dataset(
            data_accessor, train_files, schema, min(CALIBRATION_IMAGES, n_train), training=False,
            config=config.replace(label_smoothing=0.0, mixup=0.0, cutmix=0.0), n_examples=None, autotune=False)
        calibration_images = next(iter(calibration_ds))[0]

    keras.utils.set_random_seed(config.seed)
    with dtype_policy(devices.precision), devices.strategy.scope():
        model = build_model(config, devices, steps_per_epoch)
        state = checkpoints.TrainingState(
            checkpoint_dir, monitor=MONITOR, patience=config.early_stopping_patience,
            restore_best=config.restore_best_weights)
        initial_epoch = state.restore(model)
        schedule = model.optimizer._learning_rate  # pylint: disable=protected-access  (the schedule object)
        timer = budget.TimeBudget(
            config.time_budget_minutes * 60, config.epochs, steps_per_epoch, math.ceil(n_eval / global_batch),
            schedule if isinstance(schedule, budget.WarmupCosine) else None, state)
        callbacks: List[keras.callbacks.Callback] = [state, timer]
        if calibration_images is not None:
            callbacks.insert(0, calibration.PreciseBatchNorm(calibration_images))
        if config.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_run_dir, TENSORBOARD_DIR)))
        if config.epochs > initial_epoch and not state.stopped:
            model.fit(train_ds, validation_data=eval_ds, epochs=config.epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=2)
        state.finish(model)
    state.stopped_for_time = timer.stopped
    state.steps = {"done": timer.step, "planned": timer.planned_steps, "asked": timer.asked_steps}
    return model, state, devices


def float32_copy(model: keras.Model, config: TrainConfig) -> keras.Model:
    """The model rebuilt in float32 with the same weights (mixed precision keeps float32 variables).

    The serving model is float32 whatever the training precision, so it serves on any CPU.
    """
    with dtype_policy("float32"):
        copy = resnet50(config)
    copy.set_weights(model.get_weights())
    return copy


def checkpoint_dir_for(config: TrainConfig, train_files: List[str], eval_files: List[str]) -> Optional[str]:
    """The directory of this training's checkpoints: <checkpoint_root>/<key of its inputs>; None
    without checkpoints (`checkpoint` off, or no `checkpoint_root`: the runners set it)."""
    if not config.checkpoint or not config.checkpoint_root:
        return None
    root = config.checkpoint_root
    key = checkpoints.training_key(config.to_dict(), {"train": train_files, "eval": eval_files})
    if storage.is_remote(root):
        return storage.join(root, key)
    return os.path.join(os.path.normpath(root), key)


def run_fn(fn_args) -> None:
    """Trains the seed's ResNet50 on the train split and exports it with both signatures.

    Args:
      fn_args: TFX's `FnArgs`; `custom_config` holds a `TrainConfig` as a dict.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
    from tfx.utils import io_utils  # pylint: disable=import-outside-toplevel

    config = TrainConfig.from_dict(fn_args.custom_config)
    logging.info("training config: %s", config)
    schema = io_utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    ckpt_dir = checkpoint_dir_for(config, fn_args.train_files, fn_args.eval_files)
    model, state, devices = train(config, fn_args.data_accessor, fn_args.train_files, fn_args.eval_files,
                                  schema, fn_args.model_run_dir, ckpt_dir)

    exported = float32_copy(model, config) if devices.precision != "float32" else model
    export.export_serving_model(exported, fn_args.serving_model_dir, max_pixels=config.max_image_pixels,
                                flip_average=config.flip_average)
    model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    # The Pusher's canary request: what this model, in memory, answers (components/push/canary.py).
    predict = export.predictor(exported, config.flip_average)
    canary.write_expected(model_dir, lambda images: np.asarray(predict(images)))
    with tf.io.gfile.GFile(os.path.join(model_dir, HISTORY_FILE), "w") as f:
        json.dump({"config": config.to_dict(), "devices": devices.describe(), "epochs": state.history,
                   "best_epoch": state.best_epoch, "exported_epoch": state.exported_epoch,
                   "stopped_early": state.stopped,
                   "stopped_for_time": getattr(state, "stopped_for_time", False),
                   "steps": getattr(state, "steps", None),
                   "resumed_from_epoch": state.resumed_from}, f, indent=1)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, SUMMARY_FILE), "w") as f:
        model.summary(print_fn=lambda line, **_: f.write(line + "\n"))
    state.clear()  # the model is exported: a re-run of this training starts afresh
    logging.info("exported the model to %s", fn_args.serving_model_dir)
