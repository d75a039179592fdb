"""Finds out what `--data` points at, or makes the synthetic default set."""

import dataclasses
import glob
import os
from typing import Optional, Tuple
import hashlib

from components.data import sources, synthetic
from components.data.layout import PipelineRoot

HASHED_SPLIT = "all"  # the input split name of a source that ExampleGen splits by content hash
H5_PAIR_SPLITS = (("train", "train_signs.h5"), ("eval", "test_signs.h5"))  # split as given
IMAGE_FOLDER_SPLITS = ((HASHED_SPLIT, "*/*"),)  # <label>/<image>, split by hash


@dataclasses.dataclass(frozen=True)
class Source:
    """A data source as ExampleGen reads it."""

    root: str  # ExampleGen's input_base
    kind: str  # one of components.data.sources.SOURCE_KINDS
    splits: Tuple[Tuple[str, str], ...]  # (input split name, glob pattern under root)
    is_synthetic: bool = False

    @property
    def hashed(self) -> bool:
        """True when ExampleGen splits this source into train/eval by a hash of each image."""
        return len(self.splits) == 1

    def describe(self) -> str:
        if self.is_synthetic:
            return f"SYNTHETIC SIGNS-format set (deterministic, generated) in {self.root}"
        files = " + ".join(pattern for _, pattern in self.splits)
        return f"{self.root} ({self.kind}: {files})"


def resolve(data: Optional[str], paths: PipelineRoot) -> Source:
    """Returns the `Source` a `--data` value names.

    Args:
      data: one of
        - a directory with train_signs.h5 and test_signs.h5 (the train and eval splits);
        - a single SIGNS-format .h5 file (split by image hash);
        - a directory with Split-train/ and Split-eval/ of tf.Example TFRecords (such as a
          previous run's Examples artifact), or a directory of `*tfrecord*` files (split by hash);
        - a folder of class sub-folders `<label>/*.jpg|png` (split by image hash);
        - None for the synthetic default, generated under the pipeline root on first use.
      paths: the pipeline root, which holds the synthetic set.

    Raises:
      SignsDataError: `data` is missing or is none of these layouts.
    """
    if data is None:
        return Source(synthetic.write_signs_h5(paths.synthetic_data(synthetic.VERSION)), sources.H5_PAIR,
                      H5_PAIR_SPLITS, is_synthetic=True)
    if not os.path.exists(data):
        raise sources.SignsDataError(f"{data}: no such file or directory")
    if os.path.isfile(data):
        if data.endswith(".h5"):
            return Source(os.path.dirname(data), sources.H5_FILE,
                          ((HASHED_SPLIT, os.path.basename(data)),))
        raise sources.SignsDataError(
            f"{data}: expected a directory or a SIGNS-format .h5 file, got another kind of file")
    names = set(os.listdir(data))
    if {"train_signs.h5", "test_signs.h5"} <= names:
        return Source(data, sources.H5_PAIR, H5_PAIR_SPLITS)
    if {"Split-train", "Split-eval"} <= names:
        return Source(data, sources.TFRECORDS, (("train", "Split-train/*"), ("eval", "Split-eval/*")))
    if glob.glob(os.path.join(data, "*tfrecord*")):
        return Source(data, sources.TFRECORDS, ((HASHED_SPLIT, "*tfrecord*"),))
    if any(os.path.isdir(os.path.join(data, n)) for n in names):
        _check_names(data)
        return Source(data, sources.IMAGE_FOLDER, IMAGE_FOLDER_SPLITS)
    raise sources.SignsDataError(
        f"{data}: holds neither train_signs.h5 + test_signs.h5, Split-train/ + Split-eval/ "
        f"TFRecords, *tfrecord* files, nor class sub-folders (<label>/*.jpg)")


def _check_names(folder: str) -> None:
    """Refuses a name under `<folder>/<label>/` that is not UTF-8 (common in zips made on another
    system): TFX lists ExampleGen's input with `tf.io.gfile.glob`, which cannot return it, so no
    `--bad-images` choice could pass it."""
    root = os.fsencode(folder)
    for label in sorted(os.listdir(root)):
        entries = [label] + ([os.path.join(label, n) for n in sorted(os.listdir(os.path.join(root, label)))]
                             if os.path.isdir(os.path.join(root, label)) else [])
        for relative in entries:
            try:
                relative.decode("utf-8")
            except UnicodeDecodeError:
                shown = os.path.join(root, relative).decode("utf-8", "backslashreplace")
                raise sources.SignsDataError(f"{shown}: the file name is not UTF-8, which TFX cannot list; "
                                             f"rename it (e.g. convmv -f latin1 -t utf8)") from None


def estimated_size(source: Source) -> int:
    """A cheap count of the images a source holds (files, or h5 records), to size Beam's workers."""
    total = 0
    for _, pattern in source.splits:
        for path in glob.glob(os.path.join(source.root, pattern)):
            if path.endswith(".h5"):
                total += _h5_length(path)
            elif source.kind == sources.TFRECORDS:
                total += max(1, os.path.getsize(path) // 8192)  # ~8 KB a record
            else:
                total += 1
    return total


def _h5_length(path: str) -> int:
    x_key, _ = sources.h5_keys(path)
    import h5py  # pylint: disable=import-outside-toplevel

    with h5py.File(path, "r") as f:
        return int(f[x_key].shape[0])


def pin_schema(path: str, paths: PipelineRoot) -> str:
    """Copies a `--schema` file to `<pipeline root>/schemas/<content hash>.pbtxt`; returns the copy.

    ImportSchemaGen's cache key is the file's path, so an edited schema at the same path would be
    reused from the cache; a path named by the content changes whenever the content does.

    Raises:
      SignsDataError: the file is missing or is not a text-format tensorflow_metadata Schema.
    """
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise sources.SignsDataError(f"{path}: unreadable schema ({e.strerror})") from e
    try:
        text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise sources.SignsDataError(f"{path}: not a text-format Schema ({e})") from e
    pinned = os.path.join(paths.schemas, hashlib.sha256(text.encode()).hexdigest()[:16] + ".pbtxt")
    if not os.path.exists(pinned):
        os.makedirs(os.path.dirname(pinned), exist_ok=True)
        with open(pinned, "w", encoding="utf-8") as f:
            f.write(text)
    return pinned
