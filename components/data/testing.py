"""Test helpers for the data layer: encode an image, run our ExampleGen executor as TFX does."""

import io
import os

import numpy as np
from PIL import Image


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def run_example_gen(out_dir: str, data_root: str, input_splits, kind: str, eval_percent: int = 20,
                    classes=(0, 1, 2, 3, 4, 5)) -> dict:
    """Runs our ExampleGen executor as TFX would; returns {split: [(PNG bytes, label, source)]}."""
    # pylint: disable=import-outside-toplevel
    import tensorflow as tf
    from google.protobuf import json_format
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from components.data import example_gen

    input_config, output_config = example_gen.example_gen_io(input_splits, eval_percent)
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
