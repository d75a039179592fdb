"""Batch-norm statistics measured, not trailed: every validation sees the weights it scores.

Keras's BatchNormalization keeps moving averages of its batch statistics, momentum 0.9 here. While
the learning rate is high the weights move faster than those averages follow, so the validation
of a short run scores the model with statistics of earlier weights, far below what the same
weights score with their own statistics (bench/README.md, "Learning in few steps"). Early stopping, the epoch exported and a training cut short by its time budget all read
that figure.

`PreciseBatchNorm` sets each layer's moving mean and variance to the statistics of one forward
pass over a fixed set of training images (un-augmented, as the served model will see images),
before each validation: "precise BN" (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021).
It costs one forward pass of those images an epoch and changes no weight that is trained.
"""

from typing import List

import keras


def batch_norm_layers(model: keras.Model) -> List[keras.layers.BatchNormalization]:
    return [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]  # pylint: disable=protected-access


def recalibrate(model: keras.Model, images) -> None:
    """Sets every BatchNormalization layer's moving statistics to those of `images` (one batch).

    With the momentum at 0 for one training-mode forward pass, each layer's moving mean and
    variance become the batch's, computed from the statistics of the layers before it as the
    training step computes them.
    """
    layers = batch_norm_layers(model)
    momenta = [l.momentum for l in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recalibrates the batch-norm statistics on `images` before each validation.

    Args:
      images: a batch of training images, float32 (N, 64, 64, 3) in [0, 1]; a few hundred are enough.
    """

    def __init__(self, images):
        super().__init__()
        self.images = images

    def on_test_begin(self, logs=None):
        recalibrate(self.model, self.images)
