"""Tests of the exported signatures' image guard, on a small Keras model (the export, not the ResNet)."""

import io
import os
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.data import sources
from components.push import canary, kserve_manifests, tf_serving
from trainer import export


def _encoded(size, fmt, mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_declared_pixels_reads_the_header(fmt):
    assert int(export.header_pixels(tf.constant(_encoded((300, 200), fmt)))) == 60000


def test_declared_pixels_of_what_is_no_image_is_zero():
    assert int(export.header_pixels(tf.constant(b"not an image at all, just text"))) == 0
    assert int(export.header_pixels(tf.constant(b"\x89PNG"))) == 0  # too short to hold a header


def test_the_image_signature_refuses_more_pixels_than_its_limit(tmp_path):
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(6, activation="softmax")])
    export.export_serving_model(model, str(tmp_path / "m"), max_pixels=100_000)
    classify = tf.saved_model.load(str(tmp_path / "m")).signatures[export.IMAGE_BYTES_SIGNATURE]
    out = classify(image_bytes=tf.constant([_encoded((300, 200), "PNG")]))
    assert np.isclose(float(tf.reduce_sum(out["probabilities"])), 1.0, atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares more pixels than the limit of 100000"):
        classify(image_bytes=tf.constant([_encoded((400, 300), "PNG")]))


# -- Serving sees the pixels ExampleGen trained on ----------------------------------------------

def _photo():
    """An 80x48 picture that no flip or turn maps onto itself (a gradient and a red bar at the top left)."""
    y, x = np.mgrid[0:48, 0:80]
    image = np.stack([x * 3, y * 5, (x + y) * 2], -1).astype(np.uint8)
    image[5:15, 5:30] = [255, 0, 0]
    return image


def _with_orientation(image, fmt, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_serving_turns_a_photo_upright_by_its_exif_orientation_as_example_gen_does(fmt, orientation):
    """A phone photo (orientation 6: stored sideways) is classified as ExampleGen decoded it for training."""
    encoded = _with_orientation(_photo(), fmt, orientation)
    assert int(export.exif_orientation(tf.constant(encoded))) == orientation
    served = export.decode_image_bytes(tf.constant(encoded)).numpy() * 255
    trained = sources.decode_image(encoded, "photo").astype(np.float32)
    assert np.abs(served - trained).mean() < 2  # decoders and resizers differ by about 1
    if orientation != 1:  # and the orientation matters: the stored pixels alone are far from it
        stored = sources.decode_image(_with_orientation(_photo(), fmt, 1), "photo").astype(np.float32)
        assert np.abs(stored - trained).mean() > 20


def _exif_block(orientation, big_endian=False, long=False):
    """A TIFF header and one IFD entry: orientation as SHORT (type 3) or LONG (type 4)."""
    order = "big" if big_endian else "little"
    u16, u32 = (lambda v: v.to_bytes(2, order)), (lambda v: v.to_bytes(4, order))
    value = u32(orientation) if long else u16(orientation) + b"\0\0"
    return ((b"MM" if big_endian else b"II") + u16(42) + u32(8) + u16(1)
            + u16(0x0112) + u16(4 if long else 3) + u32(1) + value + u32(0))


def _jpeg_segment(marker, payload):
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _png_chunk(kind, payload):
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def _orientation_forms():
    """Every form of orientation the two paths were seen to read differently, as (bytes, what Pillow reads)."""
    jpeg = _with_orientation(_photo(), "JPEG", 1)
    plain_jpeg = jpeg[:2] + jpeg[jpeg.index(b"\xff\xdb"):] if b"\xff\xe1" in jpeg else jpeg
    png = _with_orientation(_photo(), "PNG", 1)
    iend = png.rindex(b"IEND") - 4
    exif6 = b"Exif\0\0" + _exif_block(6)
    xmp = (b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf="
           b"'http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description xmlns:tiff='http://ns.adobe.com/tiff/1.0/' "
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    raw = _exif_block(6)
    text = b"Raw profile type exif\0\nexif\n" + f"{len(raw) + 6:8d}\n".encode() + (b"Exif\0\0" + raw).hex().encode()
    return {
        "xmp-only": plain_jpeg[:2] + _jpeg_segment(0xE1, xmp) + plain_jpeg[2:],
        "png-raw-profile-text": png[:33] + _png_chunk(b"tEXt", text) + png[33:],
        "png-exif-after-image-data": png[:iend] + _png_chunk(b"eXIf", _exif_block(6)) + png[iend:],
        "exif-after-64-segments": plain_jpeg[:2] + _jpeg_segment(0xFE, b"note") * 64 + _jpeg_segment(0xE1, exif6)
        + plain_jpeg[2:],
        "exif-after-fill-bytes": plain_jpeg[:2] + b"\xff\xff" + _jpeg_segment(0xE1, exif6) + plain_jpeg[2:],
        "big-endian-long": plain_jpeg[:2] + _jpeg_segment(0xE1, b"Exif\0\0" + _exif_block(6, True, True))
        + plain_jpeg[2:],
        "little-endian-short": plain_jpeg[:2] + _jpeg_segment(0xE1, exif6) + plain_jpeg[2:],
    }


@pytest.mark.parametrize("form", sorted(_orientation_forms()))
def test_training_and_serving_turn_every_form_of_orientation_alike(form):
    """ExampleGen (Pillow) turned these upright and serving did not: over REST an XMP-oriented photo
    of a 2 read as a 5 at 0.98. Now both paths read one rule: both turn a form, or neither does."""
    encoded = _orientation_forms()[form]
    read = sources.exif_orientation(encoded)
    assert read == int(export.exif_orientation(tf.constant(encoded)))
    assert read == (6 if form in ("big-endian-long", "little-endian-short") else 1)
    served = export.decode_image_bytes(tf.constant(encoded)).numpy() * 255
    trained = sources.decode_image(encoded, form).astype(np.float32)
    assert np.abs(served - trained).mean() < 2


def test_an_exif_block_that_points_past_the_file_reads_as_upright():
    encoded = bytearray(_with_orientation(_photo(), "JPEG", 6))
    tiff = encoded.index(b"Exif\0\0") + 6
    encoded[tiff + 4:tiff + 8] = (0xFFFFFFF0).to_bytes(4, "big" if encoded[tiff:tiff + 2] == b"MM" else "little")
    assert int(export.exif_orientation(tf.constant(bytes(encoded)))) == 1
    assert int(export.exif_orientation(tf.constant(bytes(encoded[:tiff + 6])))) == 1  # cut inside the block


def test_a_16_bit_grayscale_png_is_read_alike_by_example_gen_and_serving():
    """ExampleGen used to clip every 16-bit pixel to 255 (a white image) where serving kept the high byte."""
    gray = (np.add.outer(np.arange(64), np.arange(64)) * 400 + 10_000).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    trained = sources.decode_image(buf.getvalue(), "gray16.png")
    np.testing.assert_array_equal(trained[..., 0], gray >> 8)
    served = export.decode_image_bytes(tf.constant(buf.getvalue())).numpy() * 255
    assert np.abs(served - trained).max() <= 1


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
    manifest = kserve_manifests.inference_service("gs://bucket/signs/serving_model",
                                        tf_version=tf_serving.saved_model_tf_version(exported))
    runtime = manifest["spec"]["predictor"]["model"]["runtimeVersion"]
    ops = tf_serving.saved_model_ops(exported)
    assert {"DisableCopyOnRead", "Conv2D", "StatefulPartitionedCall"} <= ops
    assert sorted(ops - tf_serving.release_ops(runtime)) == []
    assert "DisableCopyOnRead" in ops - tf_serving.release_ops(tf_serving.KSERVE_DEFAULT_TF_SERVING)


# -- The Pusher's canary: the export, loaded in a process of its own, answers as the model in memory -------

def _small_model():
    return keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(6, activation="softmax")])


def test_an_export_answers_the_canary_request_as_the_model_in_memory(tmp_path):
    model = _small_model()
    export.export_serving_model(model, str(tmp_path / "Format-Serving"))
    expected = canary.write_expected(str(tmp_path), lambda images: model(images, training=False).numpy())
    assert canary.check(str(tmp_path / "Format-Serving"), expected) is None


def test_a_candidate_that_answers_otherwise_or_not_at_all_is_named(tmp_path):
    model = _small_model()
    export.export_serving_model(model, str(tmp_path / "Format-Serving"))
    other = _small_model()  # other weights: what an export that lost its trained weights answers
    expected = canary.write_expected(str(tmp_path), lambda images: other(images, training=False).numpy())
    assert canary.check(str(tmp_path / "Format-Serving"), expected).startswith(
        "serving_default answers the canary request unlike the trained model (probabilities differ by up to ")
    assert canary.check(str(tmp_path / "Format-Serving"), expected, timeout_s=0.01) == (
        "it did not load and answer the canary request within 0.01 s")
    variables = tmp_path / "Format-Serving" / "variables"
    data = [p for p in variables.iterdir() if ".data-" in p.name][0]
    data.write_bytes(data.read_bytes()[:10])
    assert canary.check(str(tmp_path / "Format-Serving"), expected).startswith("its variables do not read")


def test_a_flip_averaged_export_answers_the_mean_of_each_image_and_its_mirror(tmp_path):
    """Test-time augmentation keeps both signatures' contract; the canary's expectation follows it."""
    init = keras.initializers.GlorotUniform(seed=0)
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(4, 3, strides=4, kernel_initializer=init),
                              keras.layers.Flatten(), keras.layers.Dense(6, activation="softmax", kernel_initializer=init)])
    export.export_serving_model(model, str(tmp_path / "Format-Serving"), flip_average=True)
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    pngs = tf.stack([tf.io.encode_png(image) for image in x])
    served = tf.saved_model.load(str(tmp_path / "Format-Serving"))
    answer = served.signatures[export.IMAGE_BYTES_SIGNATURE](image_bytes=pngs)
    images = x.astype(np.float32) / 255.0
    mean = (model(images).numpy() + model(images[:, :, ::-1].copy()).numpy()) / 2
    np.testing.assert_allclose(answer["probabilities"].numpy(), mean, atol=1e-5)
    assert answer["classes"].numpy().tolist() == mean.argmax(-1).tolist()
    assert np.abs(mean - model(images).numpy()).max() > 1e-3  # the mirror changed the answer (no pooling)
    predict = export.predictor(model, flip_average=True)
    expected = canary.write_expected(str(tmp_path), lambda batch: np.asarray(predict(batch)))
    assert canary.check(str(tmp_path / "Format-Serving"), expected) is None


@pytest.mark.parametrize("damage, said", [
    ("garbage", "not a canary request as the Trainer writes it"),
    ("truncated", "not a canary request as the Trainer writes it"),
    ("fifo", "a fifo, not a regular file; not read"),
    ("missing", "missing (the Trainer writes it beside every model it exports)"),
])
def test_a_canary_request_that_cannot_be_used_is_named_not_the_model(tmp_path, damage, said):
    """A garbage canary.json blamed the model ("loading it failed"); a FIFO blocked until the 600 s
    timeout; a missing one skipped the comparison silently."""
    model = _small_model()
    export.export_serving_model(model, str(tmp_path / "Format-Serving"))
    path = canary.write_expected(str(tmp_path), lambda images: model(images, training=False).numpy())
    if damage == "garbage":
        open(path, "w").write('{"png_b64": "not a list", "probabilities": 7}')
    elif damage == "truncated":
        text = open(path).read()
        open(path, "w").write(text[:len(text) // 2])
    elif damage == "fifo":
        os.remove(path)
        os.mkfifo(path)
    else:
        os.remove(path)
    with pytest.raises(canary.CanaryError) as raised:
        canary.check(str(tmp_path / "Format-Serving"), path)
    assert str(raised.value).startswith(f"{path}: {said}")
