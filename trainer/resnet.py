"""The seed's ResNet50 (He et al., 2015), built from identity and convolutional blocks in Keras 3."""

import keras
from keras import layers, ops

# Keras's BatchNormalization default momentum is 0.99: its moving averages need ~500 steps to
# forget their (0, 1) start, longer than a short CPU run. 0.9 converges in ~50 steps and does not
# change the architecture or the parameter count.
DEFAULT_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="signs")
class BatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization, run by TensorFlow's fused kernel on the TensorFlow backend.

    The same weights and arithmetic: batch statistics while training (the moving averages follow
    them with the layer's momentum), the moving averages otherwise. Keras 3 computes the moments
    and the normalization with separate ops on every backend, in float32 whatever the policy, so
    under mixed_bfloat16 each of the 53 layers also casts its input up and its output down.
    TensorFlow's `FusedBatchNormV3` takes the bfloat16 input as it is and does the forward and the
    backward pass in one kernel each (oneDNN's on the CPU). On the JAX and PyTorch backends, and for
    a mask or an input that is not 4-D channels-last, Keras's own code runs.
    """

    def _fused(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and self.axis in (3, -1) and self.center and self.scale and not self.synchronized)

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # pylint: disable=import-outside-toplevel  (this backend only)

        inputs = ops.cast(inputs, self.compute_dtype)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma.value, self.beta.value, epsilon=self.epsilon, data_format="NHWC",
                is_training=True)
            # The kernel's variance carries Bessel's n / (n - 1); Keras's moving variance does not.
            n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], "float32")
            variance = variance * (n - 1.0) / n
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma.value, self.beta.value, mean=self.moving_mean.value,
                variance=self.moving_variance.value, epsilon=self.epsilon, data_format="NHWC",
                is_training=False)
        return outputs


def _bn(fused_bn: bool):
    """The BatchNormalization class: ours (TensorFlow's fused kernel) or Keras's own."""
    return BatchNormalization if fused_bn else layers.BatchNormalization


def _residual_bn(name, bn_momentum, zero_init_residual, fused_bn=True):
    """The last BatchNormalization of a residual branch; with `zero_init_residual`, its scale starts at 0.

    Each block then starts as its shortcut alone (an identity block passes its input on), and the
    branch grows in as its scale learns: "zero-gamma" (Goyal et al., 2017; He et al., 2019),
    `zero_init_residual` in torchvision. Started at 1, the 16 branches add up: the untrained
    model's loss is about 3 (a uniform guess is ln 6 = 1.79), and the first epochs learn slower.
    Only the starting value of 16 scale vectors changes: the layers, shapes and parameter count
    are the seed's.
    """
    return _bn(fused_bn)(axis=3, momentum=bn_momentum, name=name,
                         gamma_initializer="zeros" if zero_init_residual else "ones")


def _main_branch(x, f, filters, stage, block, stride, init, bn_momentum, zero_init_residual, fused_bn):
    """Both blocks' residual branch: 1x1 (strided by `stride`), fxf, then 1x1 convolutions, each
    followed by BatchNormalization, ReLU between them; the seed's layer names."""
    conv_name, bn_name = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    f1, f2, f3 = filters
    x = layers.Conv2D(f1, 1, strides=stride, padding="valid", name=conv_name + "2a", kernel_initializer=init)(x)
    x = _bn(fused_bn)(axis=3, momentum=bn_momentum, name=bn_name + "2a")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f2, f, padding="same", name=conv_name + "2b", kernel_initializer=init)(x)
    x = _bn(fused_bn)(axis=3, momentum=bn_momentum, name=bn_name + "2b")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f3, 1, padding="valid", name=conv_name + "2c", kernel_initializer=init)(x)
    return _residual_bn(bn_name + "2c", bn_momentum, zero_init_residual, fused_bn)(x)


def identity_block(x, f, filters, stage, block, bn_momentum=DEFAULT_BN_MOMENTUM,
                   zero_init_residual=True, fused_bn=True):
    """The residual block whose shortcut is the identity (input and output shapes match).

    Args:
      x: input tensor, (batch, height, width, channels) with channels == filters[2].
      f: kernel size of the middle convolution.
      filters: the three convolutions' filter counts (F1, F2, F3).
      stage: the stage number (2 to 5), used in layer names.
      block: the block letter within the stage ('b', 'c', ...), used in layer names.
      bn_momentum: momentum of the BatchNormalization moving statistics.
      zero_init_residual: start the residual branch's last BatchNormalization scale at 0.
      fused_bn: `BatchNormalization` (TensorFlow's fused kernel there); False: Keras's own layer.

    Returns:
      The block's output tensor, the same shape as `x`.
    """
    init = keras.initializers.GlorotUniform(seed=0)
    shortcut = x
    x = _main_branch(x, f, filters, stage, block, 1, init, bn_momentum, zero_init_residual, fused_bn)
    x = layers.Add(name=f"add{stage}{block}")([x, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def convolutional_block(x, f, filters, stage, block, s=2, bn_momentum=DEFAULT_BN_MOMENTUM,
                        zero_init_residual=True, fused_bn=True):
    """The residual block whose shortcut is a strided 1x1 convolution (shapes change).

    Args:
      x: input tensor, (batch, height, width, channels).
      f: kernel size of the middle convolution.
      filters: the three convolutions' filter counts (F1, F2, F3).
      stage: the stage number (2 to 5), used in layer names.
      block: the block letter within the stage (always 'a' in ResNet50).
      s: stride of the first convolution and of the shortcut.
      bn_momentum: momentum of the BatchNormalization moving statistics.
      zero_init_residual: start the residual branch's last BatchNormalization scale at 0.
      fused_bn: `BatchNormalization` (TensorFlow's fused kernel there); False: Keras's own layer.

    Returns:
      The block's output tensor, with filters[2] channels and the spatial size divided by `s`.
    """
    conv_name, bn_name = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    init = keras.initializers.GlorotUniform(seed=0)
    shortcut = x
    x = _main_branch(x, f, filters, stage, block, s, init, bn_momentum, zero_init_residual, fused_bn)
    shortcut = layers.Conv2D(filters[2], 1, strides=s, padding="valid", name=conv_name + "1",
                             kernel_initializer=init)(shortcut)
    shortcut = _bn(fused_bn)(axis=3, momentum=bn_momentum, name=bn_name + "1")(shortcut)
    x = layers.Add(name=f"add{stage}{block}")([x, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(x)


# (stage, filters, stride of the convolutional block, identity blocks after it), as in the seed.
STAGES = (
    (2, (64, 64, 256), 1, 2),
    (3, (128, 128, 512), 2, 3),
    (4, (256, 256, 1024), 2, 5),
    (5, (512, 512, 2048), 2, 2),
)


@keras.saving.register_keras_serializable(package="signs")
class PerImageStandardization(layers.Layer):
    """Each image to zero mean and unit variance over its pixels and channels, as
    `tf.image.per_image_standardization` does: (x - mean) / max(std, 1 / sqrt(pixels x channels)).

    No weights. In float32 whatever the policy: a bfloat16 mean of 12,288 values loses digits.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        images = ops.cast(images, "float32")
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        std = ops.std(images, axis=(1, 2, 3), keepdims=True)
        size = images.shape[1] * images.shape[2] * images.shape[3]
        return (images - mean) / ops.maximum(std, 1.0 / size ** 0.5)


def ResNet50(input_shape=(64, 64, 3), classes=6, bn_momentum=DEFAULT_BN_MOMENTUM,
             zero_init_residual=True, standardize=False, fused_bn=True):
    """The seed's ResNet50: 23,600,006 parameters at 64x64x3 with 6 classes.

    ZERO-PAD -> CONV1 -> BN -> RELU -> MAXPOOL -> stage 2 ... stage 5 -> AVGPOOL -> FLATTEN -> fc.

    Args:
      input_shape: (height, width, channels) of the float images, scaled to [0, 1].
      classes: number of output classes.
      bn_momentum: momentum of every BatchNormalization layer's moving statistics.
      zero_init_residual: start each residual branch's last BatchNormalization scale at 0, so
        every block starts as its shortcut (see `_residual_bn`).
      standardize: put each image to zero mean and unit variance first (`PerImageStandardization`,
        no weights: the seed's layers and parameter count follow it unchanged).
      fused_bn: every BatchNormalization is `BatchNormalization` (TensorFlow's fused kernel on that
        backend; the same weights); False: Keras's own layer, as the seed wrote it.

    Returns:
      An uncompiled `keras.Model` named "ResNet50" whose output is softmax probabilities.
      The last layer is float32 even under a mixed-precision policy.
    """
    inputs = keras.Input(input_shape, name="image")
    x = PerImageStandardization(name="standardize")(inputs) if standardize else inputs
    x = layers.ZeroPadding2D((3, 3), name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, name="conv1", kernel_initializer=keras.initializers.GlorotUniform(seed=0))(x)
    x = _bn(fused_bn)(axis=3, momentum=bn_momentum, name="bn_conv1")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, filters, stride, identities in STAGES:
        x = convolutional_block(x, 3, filters, stage, "a", s=stride, bn_momentum=bn_momentum,
                                zero_init_residual=zero_init_residual, fused_bn=fused_bn)
        for block in "bcdef"[:identities]:
            x = identity_block(x, 3, filters, stage, block, bn_momentum=bn_momentum,
                               zero_init_residual=zero_init_residual, fused_bn=fused_bn)
    x = layers.AveragePooling2D(2, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(
        classes, activation="softmax", name=f"fc{classes}", dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=0))(x)
    return keras.Model(inputs, outputs, name="ResNet50")
