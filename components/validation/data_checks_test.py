"""Tests of the validation gate's checks: anomalies, decoding, classes, duplicates, skipped images."""

import collections
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from components.validation import data_checks
from components.data import example_gen
from components.validation import schema as signs_schema
from components.data import synthetic
from testsupport.fixtures import png_bytes

CLASSES = [0, 1, 2]


def _write_split(directory, records):
    os.makedirs(directory, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(directory, "data_tfrecord-00000-of-00001.gz"), "GZIP") as w:
        for image, label, source in records:
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                       "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(name="pngs")
def _pngs():
    images, _ = synthetic.make_split(8, seed=4)
    return [png_bytes(im) for im in images]


def test_duplicates_within_and_across_splits_are_counted(tmp_path, pngs):
    train = [(pngs[i], i % 3, f"t{i}.png") for i in range(6)] + [(pngs[0], 0, "copy_of_t0.png")]
    evals = [(pngs[6], 0, "e0.png"), (pngs[7], 1, "e1.png"), (pngs[2], 2, "planted.png")]
    _write_split(tmp_path / "Split-train", train)
    _write_split(tmp_path / "Split-eval", evals)
    found = data_checks.run_checks(str(tmp_path), ["train", "eval"], str(tmp_path / "none"), CLASSES, 0.5)
    assert found["errors"] == [] and found["anomalies"] == []
    assert found["duplicates"]["within"] == {"train": 1, "eval": 0}
    assert found["duplicates"]["across_splits"] == 1
    assert "train: t2.png == eval: planted.png" in found["duplicates"]["examples"]
    assert any("1 image(s) appear in more than one split" in w for w in found["warnings"])
    assert found["splits"]["train"] == {"examples": 7, "classes": {"0": 3, "1": 2, "2": 2}}
    json.dumps(found)  # the artifact is JSON


def test_undecodable_images_and_missing_classes_are_errors(tmp_path, pngs):
    _write_split(tmp_path / "Split-train", [(pngs[0], 0, "a.png"), (b"", 1, "empty.png"),
                                            (pngs[1][:100], 2, "cut.png"), (pngs[2], 0, "b.png")])
    _write_split(tmp_path / "Split-eval", [(pngs[3], 0, "c.png")])
    found = data_checks.run_checks(str(tmp_path), ["train", "eval"], str(tmp_path / "none"), CLASSES, 0.5)
    errors = found["errors"]
    assert "train: image of 'empty.png' empty image (0 bytes)" in errors
    assert any(e.startswith("train: image of 'cut.png' does not decode") for e in errors)
    assert "eval: class 1 is missing (0 of 1 examples)" in errors
    line = data_checks.error_line(found, "/x/findings.json")
    assert "\n" not in line and line.startswith(f"data validation failed, {len(errors)} error(s): ")
    assert line.endswith("(all findings: /x/findings.json)")


def test_decode_problem_wants_64x64_rgb(pngs):
    assert data_checks.decode_problem(pngs[0]) == ""
    assert data_checks.decode_problem(png_bytes(np.zeros((32, 32, 3), np.uint8))) == \
        "is RGB 32x32, expected RGB 64x64"


def test_under_represented_class_is_a_warning_with_a_threshold():
    counts = {"train": collections.Counter({0: 50, 1: 48, 2: 10})}
    errors, warnings = data_checks.class_findings(counts, CLASSES, 0.5)
    assert errors == []
    assert warnings == ["train: class 2 is under-represented: 10 examples, below 0.5 x the mean 36.0 a class"]
    _, none = data_checks.class_findings(counts, CLASSES, 0.25)
    assert none == []


def test_anomalies_read_as_feature_expected_found():
    schema = signs_schema.signs_schema([0, 1, 2, 3, 4])
    frame = pd.DataFrame({"label": [0, 3, 5, 7], "image": [b"x"] * 4, "source": [b"s"] * 4})
    stats = tfdv.generate_statistics_from_dataframe(frame)
    anomalies = tfdv.validate_statistics(stats, schema)
    [line] = data_checks.anomaly_findings({"eval": anomalies})
    assert line.startswith("eval: feature 'label' expected INT, in [0, 4], in 100% of examples, shape [1]; found ")
    assert "7" in line, line  # the value found


def test_anomalies_are_listed_on_their_own_and_among_the_errors(tmp_path, pngs):
    _write_split(tmp_path / "Split-train", [(pngs[i], i % 3, f"{i}.png") for i in range(6)])
    _write_split(tmp_path / "Split-eval", [(pngs[6], 0, "e0.png"), (pngs[7], 1, "e1.png")])
    frame = pd.DataFrame({"label": [0, 7], "image": [b"x"] * 2, "source": [b"s"] * 2})
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame),
                                         signs_schema.signs_schema(CLASSES))
    os.makedirs(tmp_path / "anomalies" / "Split-eval")
    (tmp_path / "anomalies" / "Split-eval" / data_checks.ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())
    found = data_checks.run_checks(str(tmp_path), ["train", "eval"], str(tmp_path / "anomalies"), CLASSES, 0.0)
    [line] = found["anomalies"]
    assert line.startswith("eval: feature 'label' expected INT, in [0, 2]") and line in found["errors"]


def test_skipped_images_are_reported(tmp_path, pngs):
    _write_split(tmp_path / "Split-train", [(pngs[i], i % 3, f"{i}.png") for i in range(6)])
    _write_split(tmp_path / "Split-eval", [(pngs[6], 0, "e0.png"), (pngs[7], 1, "e1.png")])
    (tmp_path / example_gen.SKIPPED_GLOB.replace("*", "all")).write_text("/d/4/bad.jpg: not a decodable image (truncated)\n")
    found = data_checks.run_checks(str(tmp_path), ["train", "eval"], str(tmp_path / "none"), CLASSES, 0.0)
    assert found["skipped"] == ["/d/4/bad.jpg: not a decodable image (truncated)"]
    assert "1 bad image(s) skipped by ExampleGen, e.g. /d/4/bad.jpg" in found["warnings"][-1]
