"""Precise batch norm: each validation's statistics are measured on the current weights."""

import keras
import numpy as np

from trainer import calibration
from trainer.resnet import ResNet50


def test_after_recalibration_inference_scores_as_the_batch_statistics_do():
    model = ResNet50()
    x = keras.random.uniform((16, 64, 64, 3), seed=2)
    model(x, training=True)  # moving statistics one step from their (0, 1) start: far from these images'
    before = np.abs(np.asarray(model(x, training=False)) - np.asarray(model(x, training=True))).max()
    calibration.recalibrate(model, x)
    after = np.abs(np.asarray(model(x, training=False)) - np.asarray(model(x, training=True))).max()
    assert after < 1e-4 < before
    assert {l.momentum for l in calibration.batch_norm_layers(model)} == {0.9}  # put back


def test_the_callback_recalibrates_before_each_validation():
    model = ResNet50()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((8, 64, 64, 3), dtype="float32")
    y = np.arange(8) % 6
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append(float(np.asarray(calibration.batch_norm_layers(self.model)[0].moving_mean.value)[0]))

    model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), verbose=0,
              callbacks=[calibration.PreciseBatchNorm(x[:4]), Spy()])
    first = calibration.batch_norm_layers(model)[0]
    calibration.recalibrate(model, x[:4])
    assert seen == [float(np.asarray(first.moving_mean.value)[0])]
