"""Unit tests of the seed's ResNet50: parameter count, block structure, names, residual wiring and start, BatchNorm momentum."""

import keras
import numpy as np
import pytest

from trainer.resnet import DEFAULT_BN_MOMENTUM, STAGES, BatchNormalization, ResNet50


@pytest.fixture(scope="module")
def model():
    return ResNet50(input_shape=(64, 64, 3), classes=6)


def test_parameter_count_matches_the_seed(model):
    assert model.count_params() == 23_600_006
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    assert trainable == 23_546_886


def test_block_structure(model):
    names = [layer.name for layer in model.layers]
    conv_blocks = [n for n in names if n.startswith("res") and n.endswith("_branch1")]
    assert conv_blocks == ["res2a_branch1", "res3a_branch1", "res4a_branch1", "res5a_branch1"]
    block_outputs = [n for n in names if n.startswith("res") and n.endswith("_out")]
    expected = [f"res{stage}{b}_out" for stage, _, _, identities in STAGES for b in "abcdef"[:identities + 1]]
    assert block_outputs == expected  # 3 + 4 + 6 + 3 = 16 blocks, as in the paper's ResNet-50
    assert len(block_outputs) == 16
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53  # conv1 + 16 blocks x 3 + 4 projection shortcuts
    assert model.get_layer("res5c_branch2c").filters == 2048
    assert model.get_layer("res3a_branch2a").strides == (2, 2)
    assert model.get_layer("res2a_branch2a").strides == (1, 1)


def test_stem_head_and_shapes(model):
    assert model.get_layer("conv1").kernel_size == (7, 7)
    assert isinstance(model.get_layer("bn_conv1"), keras.layers.BatchNormalization)
    assert model.get_layer("res5c_out").output.shape[1:] == (2, 2, 2048)
    fc = model.get_layer("fc6")
    assert fc.units == 6 and fc.activation.__name__ == "softmax"
    assert tuple(model.output.shape) == (None, 6)


def _moving_statistics(model):
    return [np.concatenate([keras.ops.convert_to_numpy(layer.moving_mean),
                            keras.ops.convert_to_numpy(layer.moving_variance)])
            for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_every_batchnorm_learns_its_statistics_at_the_models_momentum(model):
    """Two training passes on one batch: each moving statistic moves by DEFAULT_BN_MOMENTUM of its last step.

    With m' = momentum * m + (1 - momentum) * batch statistic and the same batch twice,
    m2 - m1 = momentum * (m1 - m0), for every BatchNormalization layer of the model.
    """
    x = keras.random.uniform((4, 64, 64, 3), seed=1)
    m0 = _moving_statistics(model)
    assert len(m0) == 53  # one per convolution
    model(x, training=True)
    m1 = _moving_statistics(model)
    model(x, training=True)
    m2 = _moving_statistics(model)
    for layer, (a, b, c) in enumerate(zip(m0, m1, m2)):
        step1, step2 = b - a, c - b
        assert np.abs(step1).max() > 1e-4, f"BatchNormalization #{layer} did not learn from a training pass"
        np.testing.assert_allclose(step2, DEFAULT_BN_MOMENTUM * step1, rtol=1e-3, atol=1e-6,
                                   err_msg=f"BatchNormalization #{layer}")


def test_an_identity_block_with_its_residual_branch_silenced_passes_its_input_through(model):
    """out = relu(branch(x) + x), and x >= 0 (a ReLU's output): with the branch's last BatchNormalization
    scaled to 0, each identity block hands its input on unchanged; scaled to 1, it adds to it."""
    blocks = [f"res{stage}{b}" for stage, _, _, identities in STAGES for b in "abcdef"[:identities + 1]]
    identity = {name: before for before, name in zip(blocks, blocks[1:]) if not name.endswith("a")}
    probe = keras.Model(model.input, {name: model.get_layer(f"{name}_out").output for name in blocks})
    x = keras.random.uniform((2, 64, 64, 3), seed=2)
    last_bns = [model.get_layer(f"bn{name[3:]}_branch2c") for name in identity]
    saved = [(keras.ops.convert_to_numpy(bn.gamma), keras.ops.convert_to_numpy(bn.beta)) for bn in last_bns]
    try:
        for bn in last_bns:
            bn.gamma.assign(np.ones(bn.gamma.shape, "float32"))
        built = {k: keras.ops.convert_to_numpy(v) for k, v in probe(x, training=False).items()}
        for bn in last_bns:
            bn.gamma.assign(np.zeros(bn.gamma.shape, "float32"))
            bn.beta.assign(np.zeros(bn.beta.shape, "float32"))
        silenced = {k: keras.ops.convert_to_numpy(v) for k, v in probe(x, training=False).items()}
    finally:
        for bn, (gamma, beta) in zip(last_bns, saved):
            bn.gamma.assign(gamma)
            bn.beta.assign(beta)
    assert len(identity) == 12
    for name, before in identity.items():
        assert np.abs(built[name] - built[before]).max() > 1e-3, f"{name}: its residual branch adds nothing"
        np.testing.assert_array_equal(silenced[name], silenced[before], err_msg=f"{name}: not x + branch(x)")


def _gammas(model):
    return {layer.name: keras.ops.convert_to_numpy(layer.gamma) for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


def test_each_residual_branch_starts_silenced_unless_asked_not_to(model):
    """zero_init_residual: the 16 branches' last BatchNormalization scales start at 0, every other at 1,
    and the untrained model's guess is near uniform (loss near ln 6), not the seed's confident one."""
    gammas = _gammas(model)
    last = {name for name in gammas if name.endswith("_branch2c")}
    assert len(last) == 16
    for name, gamma in gammas.items():
        assert np.all(gamma == (0.0 if name in last else 1.0)), name
    x = keras.random.uniform((8, 64, 64, 3), seed=3)
    probs = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.abs(probs[0] - probs[1]).max() > 0, "the stem and the shortcuts still carry the image"
    seed_start = ResNet50(input_shape=(64, 64, 3), classes=6, zero_init_residual=False)
    assert all(np.all(gamma == 1.0) for gamma in _gammas(seed_start).values())
    seed_probs = keras.ops.convert_to_numpy(seed_start(x, training=True))
    assert probs.max() < seed_probs.max()  # a less confident start


def test_class_count_changes_only_the_head():
    ten = ResNet50(classes=10)
    assert ten.get_layer("fc10").units == 10
    assert ten.count_params() == 23_600_006 + 4 * 2049


@pytest.mark.parametrize("policy,compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_build(policy, compute):
    """Under a mixed policy: float32 variables, half-precision layers, a float32 softmax output."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = ResNet50(input_shape=(64, 64, 3), classes=6)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.count_params() == 23_600_006
    assert model.get_layer("res3b_branch2b").compute_dtype == compute
    assert all(w.dtype == "float32" for w in model.weights)
    probs = model(keras.random.uniform((2, 64, 64, 3), seed=1), training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    assert model.get_layer("fc6").compute_dtype == "float32"


def test_per_image_standardization_adds_no_weights_and_matches_tensorflow():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer.resnet import PerImageStandardization  # pylint: disable=import-outside-toplevel

    standardized = ResNet50(input_shape=(64, 64, 3), classes=6, standardize=True)
    assert standardized.count_params() == 23_600_006 and standardized.layers[1].name == "standardize"
    images = np.random.default_rng(0).uniform(0, 1, (3, 64, 64, 3)).astype(np.float32)
    images[2] = 0.5  # a flat image: divided by 1 / sqrt(pixels), not by a zero deviation
    np.testing.assert_allclose(PerImageStandardization()(images),
                               tf.image.per_image_standardization(images).numpy(), atol=1e-5)
    # Exposure and contrast no longer count: a * image + b standardizes alike.
    np.testing.assert_allclose(PerImageStandardization()(images[:2] * 0.6 + 0.2),
                               PerImageStandardization()(images[:2]), atol=1e-4)


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 3e-2)])
def test_the_fused_batch_norm_computes_what_keras_computes(policy, tolerance):
    """Forward in training and inference, the moving statistics and the gradients: TensorFlow's
    fused kernel gives Keras's BatchNormalization's numbers (bfloat16 to its precision)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 16)).astype("float32"))
        ours, keras_own = BatchNormalization(axis=3, momentum=0.9), keras.layers.BatchNormalization(axis=3, momentum=0.9)
        for layer in (ours, keras_own):
            layer.build(x.shape)
            layer.gamma.assign(np.linspace(0.5, 1.5, 16, dtype="float32"))
            layer.beta.assign(np.linspace(-1, 1, 16, dtype="float32"))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            outs = [layer(x, training=True) for layer in (ours, keras_own)]
            losses = [tf.reduce_sum(tf.cast(o, "float32") * x) for o in outs]
        assert outs[0].dtype == outs[1].dtype
        close = lambda a, b: np.testing.assert_allclose(np.asarray(tf.cast(a, "float32")),  # noqa: E731
                                                        np.asarray(tf.cast(b, "float32")), atol=tolerance, rtol=tolerance)
        close(outs[0], outs[1])
        close(ours.moving_mean.value, keras_own.moving_mean.value)
        close(ours.moving_variance.value, keras_own.moving_variance.value)
        close(tape.gradient(losses[0], x), tape.gradient(losses[1], x))
        for name in ("gamma", "beta"):
            close(tape.gradient(losses[0], getattr(ours, name).value), tape.gradient(losses[1], getattr(keras_own, name).value))
        close(ours(x, training=False), keras_own(x, training=False))
    finally:
        keras.config.set_dtype_policy(previous)


def test_the_seeds_own_batch_norm_gives_the_same_model():
    plain = ResNet50(fused_bn=False)
    assert plain.count_params() == 23_600_006
    assert not any(type(l) is BatchNormalization for l in plain.layers)  # pylint: disable=unidiomatic-typecheck
    assert sum(type(l) is BatchNormalization for l in ResNet50().layers) == 53  # pylint: disable=unidiomatic-typecheck
