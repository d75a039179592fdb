"""Test helpers for the data layer: a stand-in object store for a test's process and the commands it
starts, an image encoded, our ExampleGen executor run as TFX runs it."""

import contextlib
import io
import os
from typing import Iterator

import numpy as np
from PIL import Image

from components.data import storage, stores
from kubeflow.stand_in_stores import start_stand_in


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
    example_gen.SignsExampleGenExecutor().Do({}, {"examples": [examples]}, props)
    out = {}
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(out_dir, f"Split-{split}", "*"))
        out[split] = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
            f = tf.train.Example.FromString(record).features.feature
            out[split].append((f["image"].bytes_list.value[0], f["label"].int64_list.value[0],
                               f["source"].bytes_list.value[0].decode()))
    return out


@contextlib.contextmanager
def stand_in_store(pipeline_root: str) -> Iterator[str]:
    """Starts a stand-in object store for a URL's scheme, with the URL's bucket; yields its endpoint.

    This process's storage layer reaches it (`storage.configured`), and so do the commands a test
    starts with this environment: it says SIGNS_MINIO_ENDPOINT, SIGNS_S3_ENDPOINT or
    STORAGE_EMULATOR_HOST and the keys, as a user's shell would. Both are restored afterwards.
    """
    kind = storage.scheme(pipeline_root)
    if not kind:
        raise storage.StorageError(f"{pipeline_root}: a stand-in store needs a gs://, s3:// or minio:// pipeline root")
    bucket = pipeline_root.split("://", 1)[1].split("/", 1)[0]
    saved = dict(os.environ)
    url, stop = start_stand_in(kind)
    if kind == "gs":
        os.environ["STORAGE_EMULATOR_HOST"] = url
    else:
        os.environ.update({"SIGNS_S3_ENDPOINT": url, "SIGNS_MINIO_ENDPOINT": url, "AWS_ACCESS_KEY_ID": "run-local",
                           "AWS_SECRET_ACCESS_KEY": "run-local", "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        with storage.configured(stores.StoreSettings.from_environment(os.environ)):
            storage.make_bucket(f"{kind}://{bucket}")
            yield url
    finally:
        stop()
        os.environ.clear()
        os.environ.update(saved)
