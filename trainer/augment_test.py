"""Tests of the new-wall and colour-cast augmentation, on drawn hands and on a real photo."""

import os

import numpy as np
import pytest
import tensorflow as tf

from components.data import synthetic
from trainer import augment

WALL = (0.85, 0.82, 0.78)  # a pale, slightly warm wall, as in the shared photos
SKIN = (0.80, 0.58, 0.45)
PHOTO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                                      "sign-language-digits", "Dataset", "3", "IMG_1121.JPG"))


def _disc_on_wall(n=2):
    """n images: a skin-coloured disc of radius 14 in the middle of a shaded wall; and the disc's
    core (radius 12: clear of the mask's softened edge)."""
    yy, xx = np.mgrid[:64, :64]
    distance = np.sqrt((yy - 32) ** 2 + (xx - 32) ** 2)
    shading = np.linspace(0.9, 1.05, 64)[:, None, None]  # the wall darkens towards the top
    image = np.where((distance < 14)[..., None], SKIN, np.array(WALL) * shading).astype(np.float32)
    return tf.constant(np.stack([image] * n)), distance < 12


def test_wall_colour_is_the_border_median():
    images, _ = _disc_on_wall()
    wall = augment.wall_colour(images).numpy()
    np.testing.assert_allclose(wall[0], np.array(WALL) * 0.975, atol=0.03)


def test_the_mask_finds_the_hand_and_not_the_shaded_wall():
    images, disc = _disc_on_wall()
    mask = augment.hand_mask(images).numpy()[0, ..., 0]
    assert mask[disc].min() > 0.99
    assert mask[:8].max() < 0.01 and mask[-8:].max() < 0.01  # the wall, dark end and light end


def test_a_new_wall_keeps_the_hand():
    images, disc = _disc_on_wall(8)
    out = augment.replace_background(images, tf.random.Generator.from_seed(3), rate=1.0).numpy()
    np.testing.assert_allclose(out[:, disc], images.numpy()[:, disc], atol=1e-6)
    wall_change = np.abs(out[:, :8] - images.numpy()[:, :8]).mean(axis=(1, 2, 3))
    assert (wall_change > 0.02).all()  # every image got a new wall
    assert len({round(float(v), 4) for v in out[:, 2, 2, 0]}) > 4  # and not the same one
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_rate_zero_changes_nothing_and_rate_half_about_half():
    images, _ = _disc_on_wall(200)
    same = augment.replace_background(images, tf.random.Generator.from_seed(0), rate=0.0)
    np.testing.assert_array_equal(same.numpy(), images.numpy())
    half = augment.replace_background(images, tf.random.Generator.from_seed(0), rate=0.5).numpy()
    changed = (np.abs(half - images.numpy()).max(axis=(1, 2, 3)) > 1e-6).mean()
    assert 0.35 < changed < 0.65


def test_no_new_wall_where_the_wall_is_not_told_apart():
    """A flat, noisy image (all 'wall', or all 'hand' to the mask) and a plain wall keep their pixels."""
    rng = np.random.default_rng(0)
    noisy = np.clip(np.array([0.86, 0.16, 0.16]) + rng.normal(0, 0.08, (4, 64, 64, 3)), 0, 1)
    plain = np.broadcast_to(np.float32(WALL), (4, 64, 64, 3))
    images = tf.constant(np.concatenate([noisy, plain]).astype(np.float32))
    out = augment.replace_background(images, tf.random.Generator.from_seed(2), rate=1.0)
    np.testing.assert_array_equal(out.numpy(), images.numpy())


def test_colour_cast_scales_each_channel_within_the_strength():
    images = tf.fill([64, 4, 4, 3], 0.5)
    out = augment.colour_cast(images, tf.random.Generator.from_seed(1), 0.2).numpy()
    gains = out[:, 0, 0, :] / 0.5
    assert gains.min() >= 0.8 - 1e-6 and gains.max() <= 1.2 + 1e-6
    assert gains.std(axis=0).min() > 0.05  # each channel varies across images
    assert np.abs(gains[:, 0] - gains[:, 2]).max() > 0.1  # and the channels differ within an image
    assert (out == out[:, :1, :1, :]).all()  # one gain per image and channel


def test_drawn_hands_keep_their_fingers():
    """On the synthetic set, the hand (skin) keeps its pixels under a new wall."""
    images, _ = synthetic.make_split(12, 5)
    x = tf.constant(images.astype(np.float32) / 255)
    mask = augment.hand_mask(x).numpy()[..., 0]
    assert (mask > 0.5).mean(axis=(1, 2)).min() > 0.08  # some hand in every image
    assert (mask > 0.5).mean(axis=(1, 2)).max() < 0.6  # and some wall


@pytest.mark.skipif(not os.path.exists(PHOTO), reason=f"the real photo {PHOTO} is not there (../shared is absent)")
def test_a_real_photo_splits_into_hand_and_wall():
    from PIL import Image  # pylint: disable=import-outside-toplevel
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((64, 64)), np.float32) / 255
    mask = augment.hand_mask(tf.constant(photo[None])).numpy()[0, ..., 0]
    assert mask[:4].mean() < 0.05  # the top rows are wall
    assert 0.15 < (mask > 0.5).mean() < 0.6  # a hand fills a good part of the frame
    assert mask[-2:].max() > 0.99 and mask[-2:].mean() > 0.2  # the wrist comes in at the bottom edge


def _mixable(n=16):
    """n flat images, image i filled with i / n, and their one-hot labels (class i % 6)."""
    images = tf.reshape(tf.repeat(tf.range(n, dtype=tf.float32) / n, 8 * 8 * 3), [n, 8, 8, 3])
    return images, tf.one_hot(tf.range(n) % 6, 6)


def test_mixup_blends_images_and_labels_in_the_same_share():
    images, labels = _mixable()
    mixed, mixed_labels = augment.mixup(images, labels, tf.random.Generator.from_seed(0), 1.0)
    mixed, mixed_labels = mixed.numpy(), mixed_labels.numpy()
    np.testing.assert_allclose(mixed_labels.sum(1), 1, atol=1e-6)
    own = mixed_labels[np.arange(16), np.arange(16) % 6]
    assert (own >= 0.5 - 1e-6).all() and (own < 0.99).sum() >= 6  # the image's own label leads
    for i in range(16):  # a flat image stays flat: share x its value + the rest x its partner's
        assert np.ptp(mixed[i]) < 1e-6
        partner_values = (mixed[i, 0, 0, 0] - own[i] * i / 16) / max(1 - own[i], 1e-6) * 16
        if own[i] < 0.999:
            assert abs(partner_values - round(partner_values)) < 1e-2


def test_cutmix_mixes_labels_by_the_box_area():
    images, labels = _mixable()
    cut, cut_labels = augment.cutmix(images, labels, tf.random.Generator.from_seed(1), 1.0)
    cut, cut_labels = cut.numpy(), cut_labels.numpy()
    np.testing.assert_allclose(cut_labels.sum(1), 1, atol=1e-6)
    for i in range(16):
        kept = np.isclose(cut[i, ..., 0], i / 16).mean()  # pixels still the image's own
        own = cut_labels[i, i % 6] if kept < 1 else 1.0
        # Its own label's share is the area it kept (plus the partner's, where the partner is of its class).
        assert own >= kept - 1e-6
    assert (cut_labels.max(1) < 0.999).sum() >= 8


def test_mix_with_both_takes_one_of_the_two_per_batch():
    images, labels = _mixable()
    rng = tf.random.Generator.from_seed(2)
    kinds = set()
    for _ in range(12):
        mixed, _ = augment.mix(images, labels, rng, 0.4, 1.0)
        flat = all(np.ptp(m) < 1e-6 for m in mixed.numpy())
        kinds.add("mixup" if flat else "cutmix")  # cutmix leaves a box: not flat
    assert kinds == {"mixup", "cutmix"}
