"""Exports the trained Keras model as a SavedModel with two serving signatures.

- `serving_default`: serialized tf.Example (`examples`, string (N,)) -> `probabilities` (N, classes).
  TFMA and batch scoring use it.
- `serve_image_bytes`: encoded JPEG or PNG bytes of any size (`image_bytes`, string (N,)) ->
  `probabilities` and `classes` (the argmax). People and services classifying photos use it.
"""

import keras
import tensorflow as tf

from trainer import data

IMAGE_BYTES_SIGNATURE = "serve_image_bytes"


def _decode_any_image(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP of any size into a 64x64x3 float32 image in [0, 1]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), data.IMAGE_SHAPE[:2], antialias=True)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def export_serving_model(model: keras.Model, path: str) -> None:
    """Writes `model` to `path` as a TF SavedModel with both signatures."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {"image": data.FEATURES["image"]})
        images = data.decode_png_batch(parsed["image"])
        return {"probabilities": model(images, training=False)}

    def serve_image_bytes(image_bytes):
        images = tf.map_fn(_decode_any_image, image_bytes,
                           fn_output_signature=tf.TensorSpec(data.IMAGE_SHAPE, tf.float32))
        probabilities = model(images, training=False)
        return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1)}

    archive.add_endpoint("serving_default", serve_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.add_endpoint(IMAGE_BYTES_SIGNATURE, serve_image_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.write_out(path, verbose=False)
