"""Small real SavedModels for the push and baseline tests: what TF Serving reads, in a second."""

import os


def saved_model(path, factor: float = 1.0, payload: str = "") -> str:
    """Writes a SavedModel with a `serve` graph (`y = x * factor`, x float32 (N, 3)) and a variables
    checkpoint to `path`; `payload`, if given, goes into `assets/payload` (to make copies slower)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    class Scale(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.fill([3], float(factor)))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return {"y": x * self.w}

    module = Scale()
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    if payload:
        os.makedirs(os.path.join(path, "assets"), exist_ok=True)
        with open(os.path.join(path, "assets", "payload"), "w") as f:
            f.write(payload)
    return str(path)
