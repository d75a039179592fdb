"""The shifts of components/evaluation/shifts.py: each the same size, seeded, and keeping the hand."""

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageFilter

from components.evaluation import shifts

WALL, SKIN = (205, 203, 200), (205, 140, 105)


def _shifted(path, name):
    return shifts.shifted(Image.open(path), name, os.path.basename(path))


@pytest.fixture()
def hand_photos(tmp_path):
    """Four 100x100 photos of a skin-coloured hand (a disk and a bar) on a pale wall."""
    yy, xx = np.mgrid[:100, :100]
    hand = ((yy - 55) ** 2 + (xx - 50) ** 2 < 22 ** 2) | ((abs(xx - 50) < 5) & (yy > 15) & (yy < 60))
    pixels = np.where(hand[..., None], SKIN, WALL).astype(np.uint8)
    paths = []
    for i in range(4):
        path = tmp_path / f"IMG_{2000 + i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths, hand


def test_the_hand_mask_finds_skin_against_the_wall(hand_photos):
    (path, *_), hand = hand_photos
    mask = shifts.skin_mask(Image.open(path).convert("RGB"))
    assert mask[hand].mean() > 0.9 and mask[~hand].mean() < 0.1


def test_every_shift_is_the_same_size_seeded_by_the_photo_and_changes_it(hand_photos):
    paths, _ = hand_photos
    original = np.asarray(Image.open(paths[0]).convert("RGB"), np.float32)
    for name in (*shifts.SHIFTS, shifts.ALL):
        image = _shifted(paths[0], name)
        assert image.size == (100, 100) and image.mode == "RGB", name
        assert np.array_equal(np.asarray(image), np.asarray(_shifted(paths[0], name))), name
        assert np.abs(np.asarray(image, np.float32) - original).mean() > 2, f"{name} left the photo as it was"
        assert not np.array_equal(np.asarray(image), np.asarray(_shifted(paths[1], name))), name
        assert Image.open(io.BytesIO(shifts.encoded_png(image))).size == (100, 100)


def test_a_new_background_keeps_the_hand(hand_photos):
    paths, hand = hand_photos
    inner = np.asarray(Image.fromarray(hand.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(7)))  # the hand, 3 px in
    changed = 0
    for path in paths:
        pixels = np.asarray(_shifted(path, "background"), np.float32)
        np.testing.assert_allclose(pixels[inner > 0], np.broadcast_to(SKIN, pixels[inner > 0].shape), atol=2)
        changed += np.abs(pixels[:10, :10] - WALL).max() > 20
    assert changed >= 3  # a new wall (a random colour may, rarely, be close to the old one)


def test_scale_makes_the_hand_smaller(hand_photos):
    paths, hand = hand_photos
    for path in paths:
        mask = shifts.skin_mask(_shifted(path, "scale")) > 0.5
        assert 0.3 * hand.sum() < mask.sum() < 0.8 * hand.sum()


def _phone(path, name):
    return shifts.phone_shifted(Image.open(path), name, os.path.basename(path))


def _skin(image):
    pixels = np.asarray(image, np.float32)
    return (np.abs(pixels - SKIN).max(-1) < 30) & (np.abs(pixels - SKIN).sum(-1) < np.abs(pixels - WALL).sum(-1))


def _axis_degrees(mask):
    """The direction of a mask's long axis, in degrees from vertical (second moments)."""
    yy, xx = np.nonzero(mask)
    cov = np.cov(np.stack([xx, yy]).astype(np.float64))
    vx, vy = np.linalg.eigh(cov)[1][:, -1]
    return np.degrees(np.arctan2(vx, vy if vy > 0 else -vy)) if vy else 90.0


def test_every_phone_shift_is_the_same_size_seeded_by_the_photo_and_changes_it(hand_photos):
    paths, _ = hand_photos
    original = np.asarray(Image.open(paths[0]).convert("RGB"), np.float32)
    for name in shifts.PHONE_NAMES:
        image = _phone(paths[0], name)
        assert image.size == (100, 100) and image.mode == "RGB", name
        assert np.array_equal(np.asarray(image), np.asarray(_phone(paths[0], name))), name
        assert np.abs(np.asarray(image, np.float32) - original).mean() > 2, f"{name} left the photo as it was"
        assert not np.array_equal(np.asarray(image), np.asarray(_phone(paths[1], name))), name


def test_the_phone_shifts_use_no_colour_rule(hand_photos):
    """The geometric and light shifts treat every colour alike: swapping the channels before or after
    gives the same picture, so no skin or wall rule decides anything (the pale-wall proxy's does)."""
    paths, _ = hand_photos
    photo = Image.open(paths[0]).convert("RGB")
    swapped = Image.fromarray(np.asarray(photo)[..., ::-1].copy())
    for name in ("tilt", "distance", "angle", "shadow", "phone"):
        one = np.asarray(shifts.phone_shifted(swapped, name, "k"), np.int16)
        other = np.asarray(shifts.phone_shifted(photo, name, "k"), np.int16)[..., ::-1]
        assert np.abs(one - other).max() <= 1, name


def test_tilt_turns_the_hand_20_to_45_degrees(hand_photos):
    paths, hand = hand_photos
    for path in paths:
        turned = abs(_axis_degrees(_skin(_phone(path, "tilt"))) - _axis_degrees(hand))
        assert 17 <= turned <= 48, turned


def test_distance_makes_the_hand_smaller_and_shadow_only_darkens(hand_photos):
    paths, hand = hand_photos
    for path in paths:
        share = _skin(_phone(path, "distance")).sum() / hand.sum()
        assert 0.45 ** 2 * 0.8 <= share <= 0.7 ** 2 * 1.2, share
        before = np.asarray(Image.open(path).convert("RGB"), np.float32)
        ratio = np.asarray(_phone(path, "shadow"), np.float32) / before
        assert ratio.max() <= 1.01 and 0.35 <= ratio.min() <= 0.7, (ratio.min(), ratio.max())


def test_room_puts_the_photo_inside_another_wall(hand_photos):
    paths, hand = hand_photos
    for path in paths:
        pixels = np.asarray(_phone(path, "room"), np.float32)
        skin = (np.abs(pixels - SKIN).max(-1) <= 3).sum()  # the hand's flat inside (no wall is this close)
        assert 0.7 ** 2 * 0.6 <= skin / hand.sum() <= 0.85 ** 2 * 1.1, skin / hand.sum()
    corners = [np.asarray(_phone(p, "room"), np.float32)[0, 0] for p in paths]
    assert sum(np.abs(c - WALL).max() > 20 for c in corners) >= 3  # another wall at the edge
