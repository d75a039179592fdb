"""Tests of the ExampleGen executor's Beam transform on real photos and on h5 files."""

import os
import shutil

import apache_beam as beam
from apache_beam.testing.util import assert_that
import numpy as np
import pytest
import tensorflow as tf

from components import example_gen, synthetic
from components.sources import SignsDataError

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sign-language-digits", "Dataset")


def _props(input_base, classes=(0, 1, 2, 3, 4, 5)):
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel
    return {"input_base": input_base,
            "custom_config": json_format.MessageToJson(example_gen.make_custom_config(classes))}


def _run(props, pattern, check):
    with beam.Pipeline() as p:
        examples = p | example_gen.SignsToExample(props, pattern)  # pylint: disable=no-value-for-parameter
        assert_that(examples, check)


def _decode(example):
    f = example.features.feature
    image = tf.io.decode_png(f["image"].bytes_list.value[0]).numpy()
    return image, f["label"].int64_list.value[0], f["source"].bytes_list.value[0].decode()


def test_classes_round_trip_through_custom_config():
    assert example_gen.read_classes(_props("x", (0, 3, 9))) == [0, 3, 9]
    assert example_gen.read_classes({}) == [0, 1, 2, 3, 4, 5]


def test_real_photo_folder_becomes_examples(tmp_path):
    if not os.path.isdir(SHARED):
        pytest.skip(f"real photos not found at {os.path.abspath(SHARED)} (../shared is absent)")
    for label in range(6):
        os.makedirs(tmp_path / str(label))
        for name in sorted(os.listdir(os.path.join(SHARED, str(label))))[:2]:
            shutil.copy(os.path.join(SHARED, str(label), name), tmp_path / str(label) / name)

    def check(examples):
        decoded = [_decode(e) for e in examples]
        assert len(decoded) == 12
        assert sorted(label for _, label, _ in decoded) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        for image, _, source in decoded:
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            assert source.upper().endswith(".JPG")

    _run(_props(str(tmp_path)), "*/*", check)


def test_h5_file_becomes_examples_with_index_sources(tmp_path):
    synthetic.write_signs_h5(str(tmp_path), n_train=7, n_test=3, seed=2)

    def check(examples):
        decoded = sorted((_decode(e) for e in examples), key=lambda d: d[2])
        assert [d[2] for d in decoded] == [f"train_signs.h5[{i}]" for i in range(7)]
        import h5py  # pylint: disable=import-outside-toplevel
        with h5py.File(tmp_path / "train_signs.h5") as f:
            np.testing.assert_array_equal(decoded[0][0], f["train_set_x"][0])  # PNG is lossless
            assert decoded[3][1] == f["train_set_y"][3]

    _run(_props(str(tmp_path)), "train_signs.h5", check)


def test_label_outside_the_classes_fails_before_any_worker(tmp_path):
    synthetic.write_signs_h5(str(tmp_path), n_train=12, n_test=3, seed=2)
    with pytest.raises(SignsDataError, match=r"train_signs\.h5\[\d+\]: label \d is not one of the classes \[0, 1, 2\]"):
        _run(_props(str(tmp_path), (0, 1, 2)), "train_signs.h5", lambda _: None)


def test_missing_h5_file(tmp_path):
    with pytest.raises(SignsDataError, match="test_signs.h5: no such file"):
        _run(_props(str(tmp_path)), "test_signs.h5", lambda _: None)
