"""How far a short training gets on the synthetic set: eval accuracy every few steps.

    python bench/short_training.py --epochs 2 [--every 14] [--set learning_rate=0.004 --set augment=false ...]

It trains the Trainer's model (`trainer.task.build_model`: the seed's ResNet50, the fused Adam, the
warm-up + cosine schedule over `--epochs`) on the synthetic default set held in memory (1800 train
and 300 eval images, as `make run` generates them), with the Trainer's augmentation unless
`--set augment=false`. Every `--every` steps (default: an epoch) it prints the eval accuracy twice:
with Keras's moving batch-norm statistics as they are, and with the statistics measured on 256
un-augmented training images (`trainer.calibration`, what the Trainer's validation uses), then the
confusion matrix at the end and the wall time. `--set` changes any `TrainConfig` field; the
defaults are the Trainer's for real photos, so the synthetic run of `make run` is
`--set learning_rate=0.004 --set warmup_epochs=0.25 --set augment=false` (pipeline/options.py's
SYNTHETIC_TRAINING). It answers "which settings learn the set in N steps"; the pipeline's own
input path is timed by `bench/train_throughput.py` and `bench/make_run.py`.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

from bench.machine import cpu_model  # noqa: E402
from components.data import startup


def parse_value(field: dataclasses.Field, text: str):
    if field.type in (bool, "bool"):
        return text.lower() in ("1", "true", "yes", "on")
    return {"int": int, "float": float}.get(getattr(field.type, "__name__", field.type), str)(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5, help="epochs of the schedule (its cosine ends with them)")
    p.add_argument("--every", type=int, default=0, help="steps between evaluations (0: one epoch)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TrainConfig change")
    p.add_argument("--train", type=int, default=1800, help="synthetic train images")
    p.add_argument("--eval", type=int, default=300, help="synthetic eval images")
    args = p.parse_args(argv)

    startup.enable()
    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    from components.training.train_config import TrainConfig  # pylint: disable=import-outside-toplevel
    from trainer import calibration, input_pipeline, task  # pylint: disable=import-outside-toplevel

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    changes = {"epochs": args.epochs}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            p.error(f"--set {item}: TrainConfig has no field {name!r}")
        changes[name] = parse_value(fields[name], value)
    config = TrainConfig(photo_augment="off").replace(**changes)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; synthetic set v{synthetic.VERSION}; "
          f"changes: {json.dumps(changes)}", flush=True)

    x, y = synthetic.make_split(args.train, 0)
    x_eval, y_eval = synthetic.make_split(args.eval, 1)
    x, x_eval = x.astype("float32") / 255, x_eval.astype("float32") / 255
    devices = task.resolve_devices(config, gpus=0)
    steps_per_epoch = input_pipeline.train_steps(len(x), config.batch_size)
    every = args.every or steps_per_epoch
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.seed)
    ds = ds.batch(config.batch_size, drop_remainder=True)  # whole batches, as the Trainer's input
    if config.augment:
        ds = ds.map(input_pipeline.augmentation(config), num_parallel_calls=2)
    ds = ds.repeat().prefetch(2)
    calibration_images = x[:task.CALIBRATION_IMAGES]
    rows = []

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _, moving = self.model.evaluate(x_eval, y_eval, batch_size=100, verbose=0)
            calibration.recalibrate(self.model, calibration_images)
            _, measured = self.model.evaluate(x_eval, y_eval, batch_size=100, verbose=0)
            rows.append(((epoch + 1) * every, moving, measured, logs["accuracy"], time.perf_counter() - start))
            print(f"step {rows[-1][0]:4d}: eval accuracy {moving:.3f} (moving statistics), {measured:.3f} "
                  f"(measured); train accuracy {logs['accuracy']:.3f}; {rows[-1][4]:.0f} s", flush=True)

    keras.utils.set_random_seed(config.seed)
    with task.dtype_policy(devices.precision):
        model = task.build_model(config, devices, steps_per_epoch=steps_per_epoch)
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=every, epochs=config.epochs * steps_per_epoch // every, verbose=0,
                  callbacks=[Evaluate()])
    predicted = model.predict(x_eval, verbose=0).argmax(axis=1)
    confusion = np.zeros((config.num_classes, config.num_classes), dtype=int)
    for true, guess in zip(y_eval, predicted):
        confusion[true, guess] += 1
    print("confusion (rows: true class, columns: predicted):")
    for k, row in enumerate(confusion):
        print(f"  {k}: {' '.join(f'{v:3d}' for v in row)}")
    print(f"eval accuracy (measured statistics) by step: {', '.join(f'{r[0]}: {r[2]:.3f}' for r in rows)}")
    print(f"wall time: {time.perf_counter() - start:.0f} s for {rows[-1][0] if rows else 0} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
