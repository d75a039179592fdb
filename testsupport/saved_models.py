"""Small real SavedModels for the push, baseline and serving tests: what TF Serving reads, in a second."""

import os


def saved_model(path, factor: float = 1.0, payload: str = "") -> str:
    """Writes a SavedModel with a `serve` graph and a variables checkpoint to `path`, with the
    pipeline's two signatures (`serving_default` on tf.Examples, `serve_image_bytes` on encoded
    images), each answering every row with the same probabilities, softmax([0, factor, 0, 0, 0, 0]).
    `payload`, if given, goes into `assets/payload` (to make copies slower)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    class Constant(tf.Module):
        def __init__(self):
            super().__init__()
            self.logits = tf.Variable([0.0, float(factor), 0.0, 0.0, 0.0, 0.0])

        def _answer(self, rows):
            probabilities = tf.nn.softmax(tf.tile(self.logits[None], [tf.shape(rows)[0], 1]))
            return probabilities

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serving_default(self, examples):
            return {"probabilities": self._answer(examples)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_image_bytes(self, image_bytes):
            probabilities = self._answer(image_bytes)
            return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1)}

    module = Constant()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serving_default,
                                                        "serve_image_bytes": module.serve_image_bytes})
    if payload:
        os.makedirs(os.path.join(path, "assets"), exist_ok=True)
        with open(os.path.join(path, "assets", "payload"), "w") as f:
            f.write(payload)
    return str(path)
