"""Helpers for the tests: run the runner as a user would, encode images."""

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PHOTOS = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")


def run_pipeline(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs `python pipeline/local_runner.py ARGS` as a user would; returns the finished process."""
    proc = subprocess.run([sys.executable, "pipeline/local_runner.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    return proc


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def write_separable_h5(directory: str, n_train: int, n_test: int) -> str:
    """A SIGNS-format h5 pair a few training steps can learn: each class has its own colour.

    Used where a test needs a model that is reliably better than an untrained one.
    """
    import h5py  # pylint: disable=import-outside-toplevel

    palette = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40], [220, 40, 220], [40, 220, 220]])
    rng = np.random.default_rng(0)
    os.makedirs(directory, exist_ok=True)
    for prefix, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n, dtype=np.int64) % 6
        x = palette[y][:, None, None, :] + rng.normal(0, 20, (n, 64, 64, 3))
        with h5py.File(os.path.join(directory, f"{prefix}_signs.h5"), "w") as f:
            f.create_dataset(f"{prefix}_set_x", data=np.clip(x, 0, 255).astype(np.uint8))
            f.create_dataset(f"{prefix}_set_y", data=y)
            f.create_dataset("list_classes", data=np.arange(6, dtype=np.int64))
    return directory


def run_example_gen(out_dir: str, data_root: str, input_splits, kind: str, eval_percent: int = 20,
                    classes=(0, 1, 2, 3, 4, 5)) -> dict:
    """Runs our ExampleGen executor as TFX would; returns {split: [(PNG bytes, label, source)]}."""
    # pylint: disable=import-outside-toplevel
    import tensorflow as tf
    from google.protobuf import json_format
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from components import example_gen
    from pipeline.pipeline import example_gen_io

    input_config, output_config = example_gen_io(input_splits, eval_percent)
    examples = standard_artifacts.Examples()
    examples.uri = out_dir
    props = {
        "input_base": data_root,
        "input_config": json_format.MessageToJson(input_config),
        "output_config": json_format.MessageToJson(output_config or example_gen_pb2.Output()),
        "custom_config": json_format.MessageToJson(example_gen.make_custom_config(classes, kind)),
    }
    example_gen.Executor().Do({}, {"examples": [examples]}, props)
    out = {}
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(out_dir, f"Split-{split}", "*"))
        out[split] = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
            f = tf.train.Example.FromString(record).features.feature
            out[split].append((f["image"].bytes_list.value[0], f["label"].int64_list.value[0],
                               f["source"].bytes_list.value[0].decode()))
    return out
