"""How far a short training gets on the synthetic set: eval accuracy after each epoch.

    python bench/short_training.py --epochs 5 [--set batch_size=16 --set augment=false ...]

It trains the Trainer's model (`trainer.task.build_model`: the seed's ResNet50, the fused Adam, the
warm-up + cosine schedule over `--epochs`) on the synthetic default set held in memory (1800 train
and 300 eval images, as `make run` generates them), with the Trainer's augmentation unless
`--set augment=false`, and prints the eval and train accuracy after each epoch and the wall time.
`--set` changes any `TrainConfig` field. It answers "which settings learn the set in N epochs";
the pipeline's own input path is timed by `bench/train_throughput.py` and `bench/make_run.py`.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

from bench.machine import cpu_model  # noqa: E402


def parse_value(field: dataclasses.Field, text: str):
    if field.type in (bool, "bool"):
        return text.lower() in ("1", "true", "yes", "on")
    return {"int": int, "float": float}.get(getattr(field.type, "__name__", field.type), str)(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TrainConfig change")
    p.add_argument("--train", type=int, default=1800, help="synthetic train images")
    p.add_argument("--eval", type=int, default=300, help="synthetic eval images")
    args = p.parse_args(argv)

    from components.data import startup  # pylint: disable=import-outside-toplevel
    startup.enable()
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    from trainer import input_pipeline, task  # pylint: disable=import-outside-toplevel
    from components.training.config import TrainConfig  # pylint: disable=import-outside-toplevel

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    changes = {"epochs": args.epochs}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            p.error(f"--set {item}: TrainConfig has no field {name!r}")
        changes[name] = parse_value(fields[name], value)
    config = TrainConfig().replace(**changes)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; changes: {json.dumps(changes)}", flush=True)

    x, y = synthetic.make_split(args.train, 0)
    x_eval, y_eval = synthetic.make_split(args.eval, 1)
    x, x_eval = x.astype("float32") / 255, x_eval.astype("float32") / 255
    devices = task.resolve_devices(config, gpus=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.seed)
    ds = ds.batch(config.batch_size, drop_remainder=True)  # whole batches, as the Trainer's input
    if config.augment:
        augment = input_pipeline.augmenter(config)
        ds = ds.map(lambda images, labels: (augment(images, training=True), labels), num_parallel_calls=2)
    keras.utils.set_random_seed(config.seed)
    with task.dtype_policy(devices.precision):
        model = task.build_model(config, devices, steps_per_epoch=input_pipeline.train_steps(len(x), config.batch_size))
        start = time.perf_counter()
        history = model.fit(ds.prefetch(2), validation_data=(x_eval, y_eval), epochs=config.epochs, verbose=2)
    seconds = time.perf_counter() - start
    print(f"eval accuracy by epoch: {', '.join(f'{v:.3f}' for v in history.history['val_accuracy'])}")
    print(f"train accuracy by epoch: {', '.join(f'{v:.3f}' for v in history.history['accuracy'])}")
    print(f"wall time: {seconds:.0f} s for {config.epochs} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
