"""Keras's Adam, with each variable's update as one fused TensorFlow op where that is possible.

Keras 3 writes Adam's update in ~38 small ops per variable (powers of the betas, the moments, the
step). For the seed's ResNet50 (214 variables) that is 8,167 of the 14,349 ops of the train step's
graph: TensorFlow spends about half of the first step tracing and optimising them, and the executor
schedules each one on every step. TensorFlow's own `ResourceApplyAdam` kernel does the same
arithmetic in one op:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
    w -= m * alpha / (sqrt(v) + epsilon)

which is Keras's `Adam.update_step` line for line (tensorflow/core/kernels/training_ops.cc,
`ApplyAdamNonCuda`; keras/src/optimizers/adam.py). `FusedAdam` uses it, with the betas' powers and the rate computed once a step, on the TensorFlow backend
outside a multi-device strategy, without amsgrad; everywhere else (JAX, PyTorch, MirroredStrategy)
it is Keras's Adam unchanged. Weight decay is applied by Keras before the update either way.

Fewer ops in the train step's graph make both the first epoch's graph build and each step faster;
`bench/train_throughput.py` and `bench/profile_step.py` measure it (bench/README.md).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="signs")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose per-variable update is TensorFlow's fused `ResourceApplyAdam`."""

    def _fused(self) -> bool:
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return False
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return not tf.distribute.has_strategy() or tf.distribute.get_strategy().num_replicas_in_sync == 1

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        scalars = {}  # by dtype: the step's shared inputs, made once rather than per variable

        def shared(dtype):
            if dtype not in scalars:
                step = ops.cast(self.iterations + 1, dtype)
                beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
                scalars[dtype] = dict(beta1_power=ops.power(beta_1, step), beta2_power=ops.power(beta_2, step),
                                      lr=ops.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                                      epsilon=ops.cast(self.epsilon, dtype))
            return scalars[dtype]

        def handle(var):
            return (var.value if isinstance(var, keras.Variable) else var).handle

        # The updates start once every gradient is ready. Run beside the backward convolutions, they
        # slowed those: oneDNN splits each convolution over all cores, and a core busy with an update
        # stalls it (a step of batch 32 on 2 AVX2 cores: 1.71 s with the overlap, 1.03 s without).
        grads = tf.identity_n(list(grads))
        for gradient, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=handle(variable), m=handle(self._momentums[index]), v=handle(self._velocities[index]),
                grad=ops.cast(gradient, variable.dtype), use_locking=False, **shared(variable.dtype))
        return None
