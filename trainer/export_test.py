"""Tests of the exported signatures' image guard, on a small Keras model (the export, not the ResNet)."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from trainer import export


def _encoded(size, fmt, mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_declared_pixels_reads_the_header(fmt):
    assert int(export.declared_pixels(tf.constant(_encoded((300, 200), fmt)))) == 60000


def test_declared_pixels_of_what_is_no_image_is_zero():
    assert int(export.declared_pixels(tf.constant(b"not an image at all, just text"))) == 0
    assert int(export.declared_pixels(tf.constant(b"\x89PNG"))) == 0  # too short to hold a header


def test_the_image_signature_refuses_more_pixels_than_its_limit(tmp_path):
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(6, activation="softmax")])
    export.export_serving_model(model, str(tmp_path / "m"), max_pixels=100_000)
    classify = tf.saved_model.load(str(tmp_path / "m")).signatures[export.IMAGE_BYTES_SIGNATURE]
    out = classify(image_bytes=tf.constant([_encoded((300, 200), "PNG")]))
    assert np.isclose(float(tf.reduce_sum(out["probabilities"])), 1.0, atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares more pixels than the limit of 100000"):
        classify(image_bytes=tf.constant([_encoded((400, 300), "PNG")]))
