"""The TFX Trainer entry point: `run_fn`, named by the dotted string 'trainer.task.run_fn'."""

import json
import math
import os
import time

from absl import logging
import keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import data, export
from trainer.config import TrainConfig
from trainer.model import ResNet50


class _EpochLog(keras.callbacks.Callback):
    """Records each epoch's metrics, learning rate and wall time for history.json."""

    def __init__(self):
        super().__init__()
        self.epochs = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "seconds": round(time.time() - self._start, 2)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        record["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.epochs.append(record)
        logging.info("epoch %d: %s", epoch + 1, record)


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """Adam's learning rate: constant, or cosine-decayed to 1% over the whole run."""
    if config.lr_schedule == "constant" or config.epochs == 0:
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01)


def run_fn(fn_args: FnArgs) -> None:
    """Trains the seed's ResNet50 on the train split and exports it with both signatures.

    Args:
      fn_args: TFX's trainer arguments; `custom_config` holds a `TrainConfig` as a dict.
    """
    config = TrainConfig.from_dict(fn_args.custom_config)
    logging.info("training config: %s", config)
    keras.utils.set_random_seed(config.seed)
    train_ds = data.make_dataset(fn_args.train_files, config.batch_size, shuffle=True,
                                 seed=config.seed, shuffle_buffer=config.shuffle_buffer,
                                 augment=config.augment)
    eval_ds = data.make_dataset(fn_args.eval_files, config.batch_size, shuffle=False)

    n_train = data.count_records(fn_args.train_files)
    steps_per_epoch = fn_args.train_steps or math.ceil(n_train / config.batch_size)
    logging.info("train split: %d examples, %d steps an epoch", n_train, steps_per_epoch)

    model = ResNet50(input_shape=data.IMAGE_SHAPE, classes=config.num_classes, bn_momentum=config.bn_momentum)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate(config, steps_per_epoch)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    epoch_log = _EpochLog()
    if config.epochs > 0:
        model.fit(train_ds, validation_data=eval_ds, epochs=config.epochs,
                  callbacks=[epoch_log], verbose=2)

    export.export_serving_model(model, fn_args.serving_model_dir)
    model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    with open(os.path.join(model_dir, "history.json"), "w") as f:
        json.dump({"config": config.to_dict(), "epochs": epoch_log.epochs}, f, indent=1)
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    with open(os.path.join(fn_args.model_run_dir, "model_summary.txt"), "w") as f:
        model.summary(print_fn=lambda line, **_: f.write(line + "\n"))
    logging.info("exported the model to %s", fn_args.serving_model_dir)
