"""ExampleGen executor that turns SIGNS h5 files or image folders into tf.Example records.

Used with FileBasedExampleGen through `custom_executor_spec`. Each input split's pattern is either
an h5 file name (`train_signs.h5`) or `*` for a folder of class sub-folders under `input_base`.
Records are {image: PNG bytes, label: int64, source: file name or 'file.h5[index]'}.
"""

import json
import os
from typing import Any, Dict, List, Sequence

import apache_beam as beam
import tensorflow as tf
from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components import sources

DEFAULT_CLASSES = (0, 1, 2, 3, 4, 5)


def make_custom_config(classes: Sequence[int]) -> example_gen_pb2.CustomConfig:
    """Packs the executor's settings into ExampleGen's `custom_config` proto."""
    settings = struct_pb2.Struct()
    settings.update({"classes": [int(c) for c in classes]})
    packed = any_pb2.Any()
    packed.Pack(settings)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def read_classes(exec_properties: Dict[str, Any]) -> List[int]:
    """Reads the class list back from the executor's `custom_config` exec property."""
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return list(DEFAULT_CLASSES)
    config = example_gen_pb2.CustomConfig()
    json_format.Parse(raw if isinstance(raw, str) else json.dumps(raw), config)
    settings = struct_pb2.Struct()
    config.custom_config.Unpack(settings)
    return [int(c) for c in settings["classes"]]


def to_example(image, label: int, source: str) -> tf.train.Example:
    """Builds the pipeline's record: PNG-encoded image, int64 label and a source id."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sources.encode_png(image)])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _read_image(item):
    path, label = item
    return sources.read_image_file(path), label, os.path.basename(path)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def SignsToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str):
    """Reads one input split (an h5 file, or `*` for class folders) into tf.Examples.

    Cheap checks (paths, h5 keys, shapes, dtypes, labels) run here, before any worker starts, so
    bad input fails at once with a one-line `SignsDataError`.
    """
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    classes = read_classes(exec_properties)
    if split_pattern.endswith(".h5"):
        path = os.path.join(input_base, split_pattern)
        if not os.path.exists(path):
            raise sources.SignsDataError(f"{path}: no such file")
        n = sources.check_h5(path, classes)
        chunks = [(path, i, min(i + sources.H5_CHUNK, n)) for i in range(0, n, sources.H5_CHUNK)]
        records = (pipeline
                   | "H5Chunks" >> beam.Create(chunks)
                   | "ReadH5" >> beam.FlatMap(lambda c: sources.read_h5_chunk(*c)))
    else:
        files = sources.list_image_folder(input_base, classes)
        records = (pipeline
                   | "ImageFiles" >> beam.Create(files)
                   | "Reshuffle" >> beam.Reshuffle()  # spread decoding over the workers
                   | "ReadImages" >> beam.Map(_read_image))
    return records | "ToExample" >> beam.MapTuple(to_example)


class Executor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor for SIGNS h5 files and image folders."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return SignsToExample
