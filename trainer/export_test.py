"""Tests of the exported signatures' image guard, on a small Keras model (the export, not the ResNet)."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.push import kserve, tf_serving
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


# -- KServe's TF Serving can load what the export holds (kserve.py's runtimeVersion) ----------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small model with the ResNet's layer kinds, exported as the Trainer exports it."""
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.ZeroPadding2D(3)(inputs)
    x = keras.layers.Conv2D(4, 7, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(x)])
    x = keras.layers.AveragePooling2D(2)(x)
    outputs = keras.layers.Dense(6, activation="softmax")(keras.layers.Flatten()(x))
    path = str(tmp_path_factory.mktemp("export") / "model")
    export.export_serving_model(keras.Model(inputs, outputs), path)
    return path


def test_every_exported_op_is_known_to_the_manifests_tf_serving(exported):
    """The op set of the runtime the manifest names holds every op of an export; KServe's default does not."""
    manifest = kserve.inference_service("gs://bucket/signs/serving_model",
                                        tf_version=tf_serving.saved_model_tf_version(exported))
    runtime = manifest["spec"]["predictor"]["model"]["runtimeVersion"]
    ops = tf_serving.saved_model_ops(exported)
    assert {"DisableCopyOnRead", "Conv2D", "StatefulPartitionedCall"} <= ops
    assert sorted(ops - tf_serving.release_ops(runtime)) == []
    assert "DisableCopyOnRead" in ops - tf_serving.release_ops(tf_serving.KSERVE_DEFAULT_TF_SERVING)
