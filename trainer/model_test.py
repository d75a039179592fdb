"""Unit tests of the seed's ResNet50: parameter count, block structure, names."""

import keras
import pytest

from trainer.model import STAGES, ResNet50


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


def test_outputs_are_probabilities(model):
    probs = keras.ops.convert_to_numpy(model(keras.random.uniform((2, 64, 64, 3), seed=1), training=False))
    assert probs.shape == (2, 6)
    assert abs(probs.sum(axis=1) - 1.0).max() < 1e-5


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
