"""FusedAdam: the same updates as Keras's Adam, in one TensorFlow op a variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.optimizer import FusedAdam


def _train(optimizer, steps=5, weight_decay_model=False):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)).astype("float32"), rng.integers(0, 3, 32)
    model.fit(x, y, batch_size=8, epochs=steps, shuffle=False, verbose=0)
    return model, [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.01}, {"beta_1": 0.8, "epsilon": 1e-4}])
def test_the_same_weights_and_moments_as_keras_adam(kwargs):
    schedule = keras.optimizers.schedules.CosineDecay(0.0, 20, warmup_target=3e-3, warmup_steps=4)
    fused_model, fused_state = _train(FusedAdam(schedule, **kwargs))
    plain_model, plain_state = _train(keras.optimizers.Adam(schedule, **kwargs))
    for a, b in zip(fused_model.get_weights() + fused_state, plain_model.get_weights() + plain_state):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert any(not np.allclose(w, 0) for w in fused_state[2:])  # the moments moved


def test_one_fused_op_per_variable_in_the_train_step():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    optimizer = FusedAdam(1e-3)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec((2, 4))).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("ResourceApplyAdam") == len(model.trainable_variables) == 4
    assert types.count("Pow") == 2  # the betas' powers, once for the step


def test_amsgrad_keeps_keras_update():
    model, state = _train(FusedAdam(1e-3, amsgrad=True), steps=2)
    assert np.isfinite(model.get_weights()[0]).all() and len(state) > 0
