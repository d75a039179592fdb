"""ExampleGen executor that turns every SIGNS source into tf.Example records.

Used with FileBasedExampleGen through `custom_executor_spec`. The source kind travels in
`custom_config`; each input split's pattern names its files under `input_base`:

- `h5_pair` / `h5_file`: an h5 file name (`train_signs.h5`), read in chunks of `H5_CHUNK` records;
- `image_folder`: `*/*`, the class sub-folders `<label>/*.jpg|png|...`;
- `tfrecords`: a glob of TFRecord files of tf.Example in our schema (gzip if `.gz`).

Records are {image: PNG bytes (64x64 RGB), label: int64, source: file name or 'file.h5[index]'}.
A bad image fails the run with a one-line `SignsDataError`, or with `bad_images='skip'` is left
out and listed in `skipped-<split>.txt` inside the Examples artifact. A worker that stops the run
first records its one line in `FAILURE_FILE` there; Beam re-raises worker errors as its own, so
`SignsExampleGenExecutor.Do` raises the recorded `SignsDataError` itself, from the Beam error.

Memory does not grow with the data set: sources are read a chunk or a file at a time, and each
split streams from its reader to its files. TFX's `WriteSplit` holds the whole split in memory on
the DirectRunner twice over: a `Reshuffle` (a GroupByKey) before the sink, and Beam's
`WriteToTFRecord`, whose write step takes a side input and so cannot be fused with the step that
makes the records. `WriteRecords` writes each bundle to a temporary gzip file instead, and a last
step renames the files of the bundles that succeeded to `data_tfrecord-NNNNN-of-MMMMM.gz` (a
retried bundle's partial file is never renamed). The work items (h5 chunks, image files, TFRecord
files) are reshuffled instead of the records: small descriptors, and the step that lets the
runner spread the reading over its workers.
"""

import json
import os
import re
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue
import tensorflow as tf
from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.components.example_gen import utils as example_gen_utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.data import sources, storage

DEFAULT_CLASSES = (0, 1, 2, 3, 4, 5)
BAD_IMAGE_POLICIES = ("fail", "skip")  # what a bad image among good ones does to the run
SKIPPED_DIR_KEY = "_signs_skipped_dir"  # exec property our Do adds: where skip and failure reports go
READ_COUNTS_KEY = "_signs_read_counts"  # exec property our Do adds: {input split: records it holds}, filled in
FAILURE_FILE = "_failure.txt"  # the first worker error that stopped the run, one line
SKIPPED_GLOB = "skipped-*.txt"  # skip reports inside the Examples artifact, one per input split
_SKIPPED = "skipped"


def make_custom_config(classes: Sequence[int], kind: str = sources.H5_PAIR, bad_images: str = "fail",
                       max_pixels: int = sources.MAX_IMAGE_PIXELS) -> example_gen_pb2.CustomConfig:
    """Packs the executor's settings into ExampleGen's `custom_config` proto.

    Args:
      classes: the labels to keep; any other label is an error.
      kind: the source kind, one of `sources.SOURCE_KINDS`.
      bad_images: 'fail' (default) stops the run at the first bad image; 'skip' leaves bad
        images out and reports them.
      max_pixels: an image declaring more pixels is a bad image, refused before decoding.
    """
    if kind not in sources.SOURCE_KINDS:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {sources.SOURCE_KINDS}")
    if bad_images not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
    settings = struct_pb2.Struct()
    settings.update({"classes": [int(c) for c in classes], "kind": kind, "bad_images": bad_images,
                     "max_pixels": int(max_pixels)})
    packed = any_pb2.Any()
    packed.Pack(settings)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def read_settings(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """Reads {classes, kind, bad_images} back from the executor's `custom_config` exec property."""
    settings = {"classes": list(DEFAULT_CLASSES), "kind": sources.H5_PAIR, "bad_images": "fail",
                "max_pixels": sources.MAX_IMAGE_PIXELS}
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if raw:
        config = example_gen_pb2.CustomConfig()
        json_format.Parse(raw if isinstance(raw, str) else json.dumps(raw), config)
        packed = struct_pb2.Struct()
        config.custom_config.Unpack(packed)
        settings.update(json_format.MessageToDict(packed))
    settings["classes"] = [int(c) for c in settings["classes"]]
    settings["max_pixels"] = int(settings["max_pixels"])
    return settings


def read_classes(exec_properties: Dict[str, Any]) -> List[int]:
    """Reads the class list back from the executor's `custom_config` exec property."""
    return read_settings(exec_properties)["classes"]


def to_example(image, label: int, source: str) -> tf.train.Example:
    """Builds the pipeline's record: PNG-encoded image, int64 label and a source id."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sources.encode_png(image)])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _record_failure(directory: Optional[str], error: sources.SignsDataError) -> None:
    """Keeps the first worker error of the run in `<directory>/FAILURE_FILE` (create-only)."""
    if directory:
        storage.create_only(storage.join(directory, FAILURE_FILE), str(error).encode())


def _recording(fn, directory: Optional[str]):
    """`fn`, with the SignsDataError it raises recorded first."""
    def call(*args):
        try:
            return fn(*args)
        except sources.SignsDataError as e:
            _record_failure(directory, e)
            raise
    return call


def recorded_failure(directory: str) -> Optional[str]:
    """The one line a worker recorded before it stopped the run; None if none did."""
    path = storage.join(directory, FAILURE_FILE)
    return storage.read_bytes(path).decode() if storage.exists(path) else None


class _ReadImages(beam.DoFn):
    """Decodes image files or TFRecord files into (image, label, source); bad ones fail or skip."""

    def __init__(self, kind: str, classes: Sequence[int], skip: bool, max_pixels: int = sources.MAX_IMAGE_PIXELS,
                 report_dir: Optional[str] = None):
        super().__init__()
        self._kind, self._classes, self._skip, self._max_pixels = kind, list(classes), skip, max_pixels
        self._report_dir = report_dir
        self._skipped = beam.metrics.Metrics.counter("signs", "skipped_images")

    def process(self, item):
        if self._kind == sources.IMAGE_FOLDER:
            path, label = item
            yield from self._guard(lambda: [(sources.read_image_file(path, self._max_pixels), label,
                                             os.path.basename(path))])
            return
        try:
            for raw, where, default_source in sources.read_tfrecord_file(item):
                yield from self._guard(lambda: [sources.parse_signs_example(  # pylint: disable=cell-var-from-loop
                    raw, self._classes, where, default_source, self._max_pixels)])
        except sources.SignsDataError as e:  # a corrupt file: the rest of it cannot be read
            yield from self._skip_or_raise(e)

    def _guard(self, read):
        try:
            yield from read()
        except sources.SignsDataError as e:
            yield from self._skip_or_raise(e)

    def _skip_or_raise(self, error: sources.SignsDataError):
        if not self._skip:
            _record_failure(self._report_dir, error)
            raise error
        self._skipped.inc()
        yield beam.pvalue.TaggedOutput(_SKIPPED, str(error))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def SignsToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str):
    """Reads one input split (an h5 file, `*/*` for class folders, or a TFRecord glob) into tf.Examples.

    Cheap checks (paths, h5 keys, shapes, dtypes, labels) run here, before any worker starts, so
    bad input fails at once with a one-line `SignsDataError`. Sources stream: h5 files in chunks,
    images and TFRecord files one at a time, so memory does not grow with the data set.
    """
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    settings = read_settings(exec_properties)
    kind, classes = settings["kind"], settings["classes"]
    if split_pattern.endswith(".h5"):
        path = storage.join(input_base, split_pattern)
        if not storage.exists(path):
            raise sources.SignsDataError(f"{path}: no such file")
        n, step = sources.check_h5_chunks(path, classes, settings["max_pixels"])
        _count_read(exec_properties, split_pattern, n)
        chunks = [(path, i, min(i + step, n)) for i in range(0, n, step)]
        records = (pipeline
                   | "H5Chunks" >> beam.Create(chunks)
                   | "SpreadChunks" >> beam.Reshuffle()  # chunk descriptors, not images
                   | "ReadH5" >> beam.FlatMap(_recording(lambda c: sources.read_h5_chunk(*c),
                                                         exec_properties.get(SKIPPED_DIR_KEY))))
    else:
        if kind == sources.IMAGE_FOLDER:
            items = sources.list_image_folder(input_base, classes)
            _count_read(exec_properties, split_pattern, len(items))  # one record (or one skipped) a file
        elif kind == sources.TFRECORDS:
            items = sources.list_tfrecord_files(storage.join(input_base, split_pattern))
            if READ_COUNTS_KEY in exec_properties:
                _count_read(exec_properties, split_pattern, sum(sources.count_tfrecords(path) for path in items))
        else:
            raise ValueError(f"split pattern {split_pattern!r} does not fit a {kind!r} source")
        read = (pipeline
                | "Files" >> beam.Create(items)
                | "Reshuffle" >> beam.Reshuffle()  # spread decoding over the workers
                | "Read" >> beam.ParDo(_ReadImages(kind, classes, settings["bad_images"] == "skip",
                                                   settings["max_pixels"], exec_properties.get(SKIPPED_DIR_KEY)))
                .with_outputs(_SKIPPED, main="records"))
        records = read.records
        _report_skipped(read[_SKIPPED], exec_properties.get(SKIPPED_DIR_KEY), split_pattern)
    return records | "ToExample" >> beam.MapTuple(to_example)


def _count_read(exec_properties: Dict[str, Any], split_pattern: str, n: int) -> None:
    """Notes the records a source split holds, for the check after the Beam pipeline (`SignsExampleGenExecutor.Do`)."""
    counts = exec_properties.get(READ_COUNTS_KEY)
    if counts is not None:
        counts[split_pattern] = n


def _written(split_dir: str) -> int:
    """The records in a written split's files, counted from the files themselves."""
    files = tf.io.gfile.glob(os.path.join(split_dir, "*.gz"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) if files else 0


def _skipped(directory: str) -> int:
    """The images left out as bad (`--bad-images skip`), from the reasons written beside the splits."""
    return sum(len(tf.io.gfile.GFile(path).read().splitlines())
               for path in tf.io.gfile.glob(os.path.join(directory, "skipped-*.txt")))


def check_written(directory: str, read: Dict[str, int], written: Dict[str, int]) -> None:
    """Raises SignsDataError unless the splits hold every record read but the skipped ones: a Beam
    runner that drops work (a lost bundle, a sink that never ran) must not leave a "complete"
    Examples artifact with records missing."""
    expected, skipped, total = sum(read.values()), _skipped(directory), sum(written.values())
    # A corrupt TFRecord file counts the records before its bad one, and is skipped as one more.
    if total > expected or total + skipped < expected:
        held = ", ".join(f"{name} {n}" for name, n in sorted(written.items()))
        raise sources.SignsDataError(
            f"{directory}: the splits hold {total} records ({held}) of the {expected} read"
            f"{f' less {skipped} skipped' if skipped else ''}: the Beam runner lost or repeated some of its work; "
            f"not registered")


def _report_skipped(skipped, directory, split_pattern: str) -> None:
    """Writes the skipped images' one-line reasons to `<directory>/skipped-<split>.txt`."""
    if not directory:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", split_pattern).strip("_") or "all"
    _ = skipped | "WriteSkipped" >> beam.io.WriteToText(
        os.path.join(directory, f"skipped-{name}"), file_name_suffix=".txt", shard_name_template="")


class _WriteBundles(beam.DoFn):
    """Writes each bundle's serialized records to a temporary gzip TFRecord file; emits its path."""

    def __init__(self, tmp_dir: str):
        super().__init__()
        self._tmp_dir = tmp_dir
        self._writer, self._path = None, None

    def start_bundle(self):
        self._writer, self._path = None, None

    def process(self, record: bytes):
        if self._writer is None:
            tf.io.gfile.makedirs(self._tmp_dir)
            self._path = os.path.join(self._tmp_dir, f"{uuid.uuid4().hex}.gz")
            self._writer = tf.io.TFRecordWriter(self._path, "GZIP")
        self._writer.write(record)

    def finish_bundle(self):
        if self._writer is not None:
            self._writer.close()
            yield WindowedValue(self._path, MIN_TIMESTAMP, [GlobalWindow()])


def _finalize(paths: List[str], split_dir: str, tmp_dir: str) -> int:
    """Renames the finished bundles' files into the split, then drops the temporary directory."""
    paths = sorted(paths)
    for i, path in enumerate(paths):
        tf.io.gfile.rename(path, os.path.join(
            split_dir, f"{write_split.DEFAULT_FILE_NAME}-{i:05d}-of-{len(paths):05d}.gz"), overwrite=True)
    if tf.io.gfile.exists(tmp_dir):
        tf.io.gfile.rmtree(tmp_dir)
    return len(paths)


@beam.ptransform_fn
def WriteRecords(records: beam.PCollection, split_dir: str) -> beam.PCollection:
    """Writes serialized records as gzip TFRecord files into `split_dir`, streaming."""
    tmp_dir = os.path.join(split_dir, f".tmp-{uuid.uuid4().hex}")
    return (records
            | "WriteBundles" >> beam.ParDo(_WriteBundles(tmp_dir))
            | "Files" >> beam.combiners.ToList()
            | "Finalize" >> beam.Map(_finalize, split_dir, tmp_dir))


def _fail_if_empty(count: int, split: str, input_base: str) -> None:
    if count == 0:
        raise sources.SignsDataError(
            f"{input_base}: the '{split}' split is empty (no image of the source landed in it; "
            f"add images or change --eval-percent)")


class SignsExampleGenExecutor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor for every SIGNS source; fails on an empty output split."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return SignsToExample

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        for name, examples in splits.items():
            _ = (examples
                 | f"Count[{name}]" >> beam.combiners.Count.Globally()
                 | f"CheckNotEmpty[{name}]" >> beam.Map(
                     _recording(_fail_if_empty, exec_properties.get(SKIPPED_DIR_KEY)), name, input_base))
        return splits

    def Do(self, input_dict, output_dict, exec_properties):
        """BaseExampleGenExecutor.Do, with each split streamed to its files (`WriteRecords`)."""
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        read: Dict[str, int] = {}  # records in each input split, noted by SignsToExample
        exec_properties = dict(exec_properties, **{SKIPPED_DIR_KEY: examples.uri, READ_COUNTS_KEY: read})
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        examples.split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config))
        try:
            with self._make_beam_pipeline() as pipeline:
                for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                    _ = (split
                         | f"Serialize[{name}]" >> beam.Map(lambda example: example.SerializeToString())
                         | f"Write[{name}]" >> WriteRecords(artifact_utils.get_split_uri([examples], name)))
        except Exception as e:  # Beam's own error, with ours inside its text: raise ours as it was
            failure = recorded_failure(examples.uri)
            if failure is None:
                raise
            raise sources.SignsDataError(failure) from e
        split_names = artifact_utils.decode_split_names(examples.split_names)
        check_written(examples.uri, read, {name: _written(artifact_utils.get_split_uri([examples], name))
                                           for name in split_names})
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if payload_format:
            examples_utils.set_payload_format(examples, payload_format)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        if file_format:
            examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))


def example_gen_io(input_splits: Sequence[Tuple[str, str]], eval_percent: int):
    """Returns ExampleGen's (input_config, output_config) for a source's input splits.

    Args:
      input_splits: (name, glob pattern under the data root) pairs. Two or more are used as they
        are (e.g. train_signs.h5 -> train, test_signs.h5 -> eval); a single one is split into
        train and eval by a hash of each record's PNG image bytes.
      eval_percent: percent of a single input split that goes to eval, 1..99.
    """
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=pattern) for name, pattern in input_splits])
    if len(input_splits) > 1:
        return input_config, None
    if not 1 <= eval_percent <= 99:
        raise ValueError(f"eval_percent must be in 1..99, got {eval_percent}")
    split_config = example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_percent)],
        # Hash the image bytes (PNG of the 64x64 pixels), so identical images land in the same split.
        partition_feature_name="image")
    return input_config, example_gen_pb2.Output(split_config=split_config)
