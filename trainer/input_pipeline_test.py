"""Tests of the Trainer's input pipeline, through TFX's data accessor, on small real records."""

import colorsys

import numpy as np
import pytest
import tensorflow as tf

from components.data.example_gen import to_example
from components.validation.schema import signs_schema
from trainer import input_pipeline
from components.training.train_config import TrainConfig

N = 24


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """N images as ExampleGen writes them: image i is filled with the value 10 * i, label i % 6."""
    path = tmp_path_factory.mktemp("split") / "data_tfrecord-00000-of-00001.gz"
    with tf.io.TFRecordWriter(str(path), "GZIP") as writer:
        for i in range(N):
            image = np.full((64, 64, 3), 10 * i, np.uint8)
            writer.write(to_example(image, i % 6, f"img{i}.png").SerializeToString())
    return str(path)


def _batches(records, training, **changes):
    config = TrainConfig(seed=1).replace(**changes)
    ds = input_pipeline.make_dataset(input_pipeline.records_accessor(), [records], signs_schema(range(6)), 8,
                           training=training, config=config, n_examples=N)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_eval_batches_keep_the_order_and_the_pixels(records):
    batches = _batches(records, training=False)
    assert [x.shape for x, _ in batches] == [(8, 64, 64, 3)] * 3
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.dtype == np.float32 and y.tolist() == [i % 6 for i in range(N)]
    np.testing.assert_allclose(x[:, 0, 0, 0], np.arange(N) * 10 / 255.0, rtol=1e-6)


def test_training_shuffles_each_epoch_and_keeps_labels_with_images(records):
    config = TrainConfig(seed=1, augment=False)
    ds = input_pipeline.make_dataset(input_pipeline.records_accessor(), [records], signs_schema(range(6)), 8,
                           training=True, config=config, n_examples=N)
    orders = []
    for _ in range(2):
        x = np.concatenate([b[0].numpy() for b in ds])
        orders.append(np.round(x[:, 0, 0, 0] * 255 / 10).astype(int).tolist())
    assert sorted(orders[0]) == list(range(N)) and orders[0] != orders[1]
    for x, y in ds:  # the label still belongs to its image after the shuffle
        ids = np.round(x.numpy()[:, 0, 0, 0] * 255 / 10).astype(int)
        assert (ids % 6 == y.numpy()).all()


def test_a_train_epoch_is_whole_batches_and_an_eval_epoch_every_image(records):
    """24 images in batches of 10: training takes 2 whole batches (a different 4 wait each epoch), so
    the train step sees one shape; eval takes all 24, the last batch smaller."""
    config = TrainConfig(seed=1, augment=False)
    train = input_pipeline.make_dataset(input_pipeline.records_accessor(), [records], signs_schema(range(6)), 10,
                                        training=True, config=config, n_examples=N)
    left_out = []
    for _ in range(3):
        shapes = [x.shape[0] for x, _ in train]
        assert shapes == [10, 10] == [10] * input_pipeline.train_steps(N, 10)
        seen = np.concatenate([np.round(x.numpy()[:, 0, 0, 0] * 255 / 10).astype(int) for x, _ in train])
        left_out.append(sorted(set(range(N)) - set(seen.tolist())))
    assert len({tuple(ids) for ids in left_out}) > 1, "the same images were left out every epoch"
    evaluated = input_pipeline.make_dataset(input_pipeline.records_accessor(), [records], signs_schema(range(6)), 10,
                                            training=False, config=config, n_examples=N)
    assert [x.shape[0] for x, _ in evaluated] == [10, 10, 4]
    assert input_pipeline.train_steps(5, 10) == 1  # a split smaller than a batch is one batch
    small = input_pipeline.make_dataset(input_pipeline.records_accessor(), [records], signs_schema(range(6)), 32,
                                        training=True, config=config, n_examples=N)
    assert [x.shape[0] for x, _ in small] == [N]


def test_augmentation_changes_training_images_only_within_range(records):
    plain = np.concatenate([b[0] for b in _batches(records, training=True, augment=False)])
    augmented = np.concatenate([b[0] for b in _batches(records, training=True, augment=True,
                                                       flip=False, shift=0, zoom=0, rotation_degrees=0)])
    assert augmented.shape == plain.shape
    assert 0.0 <= augmented.min() and augmented.max() <= 1.0
    # brightness/contrast move flat images' values; the same seed orders both runs alike
    assert not np.allclose(np.sort(plain[:, 0, 0, 0]), np.sort(augmented[:, 0, 0, 0]))
    evaluation = np.concatenate([b[0] for b in _batches(records, training=False, augment=True)])
    np.testing.assert_allclose(evaluation[:, 0, 0, 0], np.arange(N) * 10 / 255.0, rtol=1e-6)


def test_augmenter_follows_the_config():
    names = [l.__class__.__name__ for l in input_pipeline.augmenter(TrainConfig()).layers]
    assert names == ["RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom",
                     "RandomBrightness", "RandomContrast", "RandomHue", "RandomSaturation"]
    off = TrainConfig(flip=False, zoom=0.0, zoom_out=0.0, brightness=0.0, hue=0.0, saturation=0.0)
    assert [l.__class__.__name__ for l in input_pipeline.augmenter(off).layers] == [
        "RandomTranslation", "RandomRotation", "RandomContrast"]


def test_photo_augment_off_leaves_the_earlier_augmentation():
    off = TrainConfig(photo_augment="off")
    assert [l.__class__.__name__ for l in input_pipeline.augmenter(off.augmentation()).layers] == [
        "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomBrightness", "RandomContrast"]
    assert (off.augmentation().background, off.augmentation().colour_cast) == (0, 0)
    assert TrainConfig(photo_augment="auto").augmentation() == TrainConfig(photo_augment="auto")


def test_hue_and_saturation_stay_within_their_bounds():
    """hue 0.05 turns a skin colour by up to 18 degrees either way; saturation 0.3 scales it by 0.54x to 1.86x."""
    config = TrainConfig(seed=3, flip=False, shift=0, rotation_degrees=0, zoom=0, zoom_out=0, brightness=0,
                         contrast=0, hue=0.05, saturation=0.3)
    layers = input_pipeline.augmenter(config)
    assert [l.__class__.__name__ for l in layers.layers] == ["RandomHue", "RandomSaturation"]
    skin = (0.8, 0.5, 0.3)
    out = np.asarray(layers(np.tile(np.float32(skin), (256, 4, 4, 1)), training=True))
    h0, s0, v0 = colorsys.rgb_to_hsv(*skin)
    hsv = np.array([colorsys.rgb_to_hsv(*px) for px in out[:, 0, 0]])
    turn = (hsv[:, 0] - h0 + 0.5) % 1.0 - 0.5
    assert np.abs(turn).max() <= 0.05 + 1e-3 and (turn > 0.02).any() and (turn < -0.02).any()
    ratio = hsv[:, 1] / s0
    assert ratio.min() >= 0.54 - 1e-2 and ratio.max() <= 1.86 + 1e-2 and ratio.min() < 0.8 and ratio.max() > 1.2
    np.testing.assert_allclose(hsv[:, 2], v0, atol=2e-3)  # the brightness is left alone


def test_zoom_out_goes_further_than_zoom_in():
    zoom = [l for l in input_pipeline.augmenter(TrainConfig(zoom=0.1, zoom_out=0.3)).layers
            if l.__class__.__name__ == "RandomZoom"][0]
    assert (zoom.height_factor, zoom.width_factor) == ((-0.1, 0.3), None)
    assert [l for l in input_pipeline.augmenter(TrainConfig(zoom=0.1, zoom_out=0)).layers
            if l.__class__.__name__ == "RandomZoom"][0].height_factor == (-0.1, 0.1)


def test_new_walls_and_colour_casts_run_in_the_input_pipeline(tmp_path):
    """Drawn hands through the records, the parallel maps and both augmentations: each hand keeps
    its pixels up to one gain a channel, its label stays with it, its wall is new; evaluation is untouched."""
    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    images, labels = synthetic.make_split(16, 2)
    originals = images.astype(np.float32) / 255.0
    path = str(tmp_path / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, "GZIP") as writer:
        for i, (image, label) in enumerate(zip(images, labels)):
            writer.write(to_example(image, int(label), f"hand{i}.png").SerializeToString())
    still = dict(flip=False, shift=0, zoom=0, zoom_out=0, rotation_degrees=0, brightness=0, contrast=0, hue=0,
                 saturation=0)
    config = TrainConfig(seed=4, background=1.0, colour_cast=0.2, **still)
    ds = input_pipeline.make_dataset(input_pipeline.records_accessor(), [path], signs_schema(range(6)), 8,
                                     training=True, config=config, n_examples=16)
    x, y = (np.concatenate(parts) for parts in zip(*[(a.numpy(), b.numpy()) for a, b in ds]))
    assert x.shape == (16, 64, 64, 3) and 0.0 <= x.min() and x.max() <= 1.0
    cores = input_pipeline.augment_lib.hand_mask(tf.constant(originals)).numpy()[..., 0] > 0.999

    def misfit(out, j):  # how far `out`'s hand is from original j's, after the best gain a channel
        hand, original = out[cores[j]], originals[j][cores[j]]
        return np.abs(hand - original * hand.mean(0) / original.mean(0)).mean()
    order = [min(range(16), key=lambda j, out=out: misfit(out, j)) for out in x]
    assert sorted(order) == list(range(16)) and max(misfit(out, j) for out, j in zip(x, order)) < 0.01
    assert (labels[order] == y).all()
    gains = np.array([out[cores[j]].mean(0) / originals[j][cores[j]].mean(0) for out, j in zip(x, order)])
    assert gains.min() > 0.8 - 0.02 and gains.max() < 1.2 + 0.02 and gains.std() > 0.05  # the casts
    wall = np.abs(x[:, 1:6, 1:6] - originals[order][:, 1:6, 1:6]).mean(axis=(1, 2, 3))
    assert (wall > 0.05).mean() > 0.8  # nearly every wall is new (a random one may come close to the old)
    evaluation = input_pipeline.make_dataset(input_pipeline.records_accessor(), [path], signs_schema(range(6)), 8,
                                             training=False, config=config, n_examples=16)
    np.testing.assert_allclose(np.concatenate([a.numpy() for a, _ in evaluation]), originals, atol=1e-6)


def test_count_records(records):
    assert input_pipeline.count_records([records]) == N


def test_label_smoothing_and_mixing_get_one_hot_labels_in_both_splits(records):
    for training in (False, True):
        for changes in ({"label_smoothing": 0.1}, {"mixup": 0.4, "augment": True}):
            batches = _batches(records, training, **changes)
            y = np.concatenate([b[1] for b in batches])
            assert y.shape[1:] == (6,) and y.dtype == np.float32, changes
            np.testing.assert_allclose(y.sum(1), 1, atol=1e-5)
            if not training or "label_smoothing" in changes:  # one-hot: the loss smooths them, not the data
                assert set(np.unique(y)) <= {0.0, 1.0}
    assert _batches(records, False)[0][1].ndim == 1  # without them, class numbers as before


def test_mixup_blends_the_training_batches(records):
    batches = _batches(records, True, mixup=1.0, flip=False, shift=0.0, rotation_degrees=0.0, zoom=0.0, zoom_out=0.0,
                       brightness=0.0, contrast=0.0, hue=0.0, saturation=0.0, background=0.0, colour_cast=0.0)
    y = np.concatenate([b[1] for b in batches])
    assert (y.max(1) < 0.99).sum() >= 4  # most images now carry two labels
