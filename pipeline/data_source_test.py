"""Tests of what `--data` is taken to be."""

import os

import pytest

from components.data import sources, synthetic
from components.data.layout import PipelineRoot
from components.data.sources import SignsDataError
from pipeline import data_source


def test_each_layout_is_recognised(tmp_path):
    pair = synthetic.write_signs_h5(str(tmp_path / "pair"), n_train=6, n_test=6, seed=1)
    s = data_source.resolve(pair, PipelineRoot("unused"))
    assert (s.kind, s.splits, s.hashed) == (sources.H5_PAIR, (("train", "train_signs.h5"), ("eval", "test_signs.h5")), False)
    assert data_source.estimated_size(s) == 12

    one = data_source.resolve(os.path.join(pair, "train_signs.h5"), PipelineRoot("unused"))
    assert (one.kind, one.root, one.splits, one.hashed) == (sources.H5_FILE, pair, (("all", "train_signs.h5"),), True)

    for split in ("Split-train", "Split-eval"):
        os.makedirs(tmp_path / "rec" / split)
    assert data_source.resolve(str(tmp_path / "rec"), PipelineRoot("unused")).splits == (
        ("train", "Split-train/*"), ("eval", "Split-eval/*"))
    os.makedirs(tmp_path / "flat")
    (tmp_path / "flat" / "part-0.tfrecord.gz").write_bytes(b"")
    flat = data_source.resolve(str(tmp_path / "flat"), PipelineRoot("unused"))
    assert (flat.kind, flat.splits) == (sources.TFRECORDS, (("all", "*tfrecord*"),))

    os.makedirs(tmp_path / "folder" / "0")
    folder = data_source.resolve(str(tmp_path / "folder"), PipelineRoot("unused"))
    assert (folder.kind, folder.splits) == (sources.IMAGE_FOLDER, (("all", "*/*"),))


def test_what_is_not_a_source(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SignsDataError, match=r"notes\.txt: expected a directory or a SIGNS-format \.h5 file"):
        data_source.resolve(str(tmp_path / "notes.txt"), PipelineRoot("unused"))
    with pytest.raises(SignsDataError, match="holds neither"):
        data_source.resolve(str(tmp_path), PipelineRoot("unused"))


def test_a_file_name_that_is_not_utf8_is_named_in_one_line(tmp_path):
    """TFX's ExampleGen driver lists the folder with tf.io.gfile.glob, which raised UnicodeDecodeError naming no file."""
    folder = tmp_path / "photos"
    os.makedirs(folder / "3")
    (folder / "3" / "ok.png").write_bytes(sources.encode_png(synthetic.make_split(1, 0)[0][0]))
    with open(os.path.join(os.fsencode(folder / "3"), b"caf\xe9.jpg"), "wb") as f:
        f.write(b"x")
    with pytest.raises(SignsDataError) as e:
        data_source.resolve(str(folder), PipelineRoot("unused"))
    assert str(e.value).startswith(f"{folder}/3/caf\\xe9.jpg: the file name is not UTF-8")
    assert "\n" not in str(e.value)


def test_schema_is_pinned_by_content(tmp_path):
    from components.validation.schema import signs_schema  # pylint: disable=import-outside-toplevel
    path = tmp_path / "schema.pbtxt"
    path.write_text(str(signs_schema([0, 1])))
    first = data_source.pin_schema(str(path), PipelineRoot(str(tmp_path / "root")))
    assert first == data_source.pin_schema(str(path), PipelineRoot(str(tmp_path / "root")))
    path.write_text(str(signs_schema([0, 1, 2])))
    assert data_source.pin_schema(str(path), PipelineRoot(str(tmp_path / "root"))) != first
    path.write_text("feature { nonsense")
    with pytest.raises(SignsDataError, match=r"schema\.pbtxt: not a text-format Schema"):
        data_source.pin_schema(str(path), PipelineRoot(str(tmp_path / "root")))
    with pytest.raises(SignsDataError, match="missing.pbtxt: unreadable schema"):
        data_source.pin_schema(str(tmp_path / "missing.pbtxt"), PipelineRoot(str(tmp_path / "root")))
