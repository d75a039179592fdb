"""Exports the trained Keras model as a SavedModel with two serving signatures.

- `serving_default`: serialized tf.Example (`examples`, string (N,)) -> `probabilities` (N, classes).
  TFMA and batch scoring use it.
- `serve_image_bytes`: encoded JPEG or PNG bytes of any size (`image_bytes`, string (N,)) ->
  `probabilities` and `classes` (the argmax). People and services classifying photos use it.
"""

import keras
import tensorflow as tf

from components.data.sources import MAX_IMAGE_PIXELS
from components.training.config import IMAGE_BYTES_SIGNATURE
from trainer import input_pipeline

__all__ = ["IMAGE_BYTES_SIGNATURE", "declared_pixels", "export_serving_model"]


def _unsigned(encoded: tf.Tensor, offset: int, size: int, big_endian: bool) -> tf.Tensor:
    """The unsigned integer of `size` bytes at `offset` of a string scalar, as int64."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, size), tf.uint8), tf.int64)
    weights = [256 ** (size - 1 - i) if big_endian else 256 ** i for i in range(size)]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64))


def declared_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """Width x height that an encoded image's header declares (int64), read without decoding it.

    PNG (IHDR), JPEG (SOF, through `tf.image.extract_jpeg_shape`), GIF (logical screen) and BMP
    (info header); 0 for anything else, which `tf.io.decode_image` then refuses on its own.
    """
    long_enough = tf.strings.length(encoded) >= 26
    magic8 = tf.strings.substr(encoded, 0, 8)

    def png():
        return _unsigned(encoded, 16, 4, True) * _unsigned(encoded, 20, 4, True)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def gif():
        return _unsigned(encoded, 6, 2, False) * _unsigned(encoded, 8, 2, False)

    def bmp():
        width, height = _unsigned(encoded, 18, 4, False), _unsigned(encoded, 22, 4, False)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # top-down BMPs are negative
        return width * height

    return tf.case([(tf.logical_and(long_enough, tf.equal(magic8, b"\x89PNG\r\n\x1a\n")), png),
                    (tf.image.is_jpeg(encoded), jpeg),
                    (tf.logical_and(long_enough, tf.equal(tf.strings.substr(encoded, 0, 4), b"GIF8")), gif),
                    (tf.logical_and(long_enough, tf.equal(tf.strings.substr(encoded, 0, 2), b"BM")), bmp)],
                   default=lambda: tf.constant(0, tf.int64), exclusive=False)


def _decode_any_image(encoded: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP of any size up to `max_pixels` into a 64x64x3 float32 image in [0, 1]."""
    pixels = declared_pixels(encoded)
    checked = tf.debugging.assert_less_equal(
        pixels, tf.constant(max_pixels, tf.int64),
        message=f"the image declares more pixels than the limit of {max_pixels}; not decoded")
    with tf.control_dependencies([checked]):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), input_pipeline.IMAGE_SHAPE[:2], antialias=True)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def export_serving_model(model: keras.Model, path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Writes `model` to `path` as a TF SavedModel with both signatures.

    Args:
      model: the Keras model (64x64x3 float32 in [0, 1] -> probabilities).
      path: the SavedModel directory.
      max_pixels: `serve_image_bytes` refuses an image whose header declares more pixels.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {"image": input_pipeline.FEATURES["image"]})
        images = input_pipeline.decode_png_batch(parsed["image"])
        return {"probabilities": model(images, training=False)}

    def serve_image_bytes(image_bytes):
        images = tf.map_fn(lambda encoded: _decode_any_image(encoded, max_pixels), image_bytes,
                           fn_output_signature=tf.TensorSpec(input_pipeline.IMAGE_SHAPE, tf.float32))
        probabilities = model(images, training=False)
        return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1)}

    archive.add_endpoint("serving_default", serve_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.add_endpoint(IMAGE_BYTES_SIGNATURE, serve_image_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.write_out(path, verbose=False)
