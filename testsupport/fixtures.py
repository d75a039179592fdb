"""Test helpers for the data layer: a stand-in object store for a test's process and the commands it
starts, an image encoded, our ExampleGen executor run as TFX runs it."""

import contextlib
import dataclasses
import io
import os
from typing import Dict, Iterator
from unittest import mock

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


@dataclasses.dataclass(frozen=True)
class StandInStore:
    """A stand-in object store that is running: its endpoint, and the environment a user's shell
    would have to reach it (SIGNS_MINIO_ENDPOINT, SIGNS_S3_ENDPOINT or STORAGE_EMULATOR_HOST, and
    the keys), for the commands and processes a test starts."""

    url: str
    env: Dict[str, str]


@contextlib.contextmanager
def stand_in_store(pipeline_root: str) -> Iterator[StandInStore]:
    """Starts a stand-in object store for a URL's scheme, with the URL's bucket.

    This process's storage layer reaches it while the context lasts (`storage.configured`), and a
    process the test starts reaches it with `env` added to its environment. The S3 keys are also
    in this process's environment for that long (`mock.patch.dict` restores it): boto3 reads them
    there, as it does on a user's machine.
    """
    kind = storage.scheme(pipeline_root)
    if not kind:
        raise storage.StorageError(f"{pipeline_root}: a stand-in store needs a gs://, s3:// or minio:// pipeline root")
    bucket = pipeline_root.split("://", 1)[1].split("/", 1)[0]
    url, stop = start_stand_in(kind)
    if kind == "gs":
        env = {"STORAGE_EMULATOR_HOST": url}
    else:
        env = {"SIGNS_S3_ENDPOINT": url, "SIGNS_MINIO_ENDPOINT": url, "AWS_ACCESS_KEY_ID": "run-local",
               "AWS_SECRET_ACCESS_KEY": "run-local", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        with mock.patch.dict(os.environ, env), storage.configured(stores.StoreSettings.from_environment(os.environ)):
            storage.make_bucket(f"{kind}://{bucket}")
            yield StandInStore(url, env)
    finally:
        stop()
