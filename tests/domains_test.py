"""bench/domains.py and the accuracy bench's splits: people held out whole, shifts that keep the hand."""

import io
import os
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.helpers import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
try:
    import accuracy  # pylint: disable=import-error,wrong-import-position
    import domains  # pylint: disable=import-error,wrong-import-position
finally:
    sys.path.pop(0)

WALL, SKIN = (205, 203, 200), (205, 140, 105)


def test_people_are_runs_of_rising_digits():
    photos = [(f"d/{d}/IMG_{100 + d}.JPG", d) for d in range(10)]  # one person signs 0-9
    photos += [(f"d/{d}/IMG_{110 + d}.JPG", d) for d in (0, 1, 2, 4, 5)]  # the next skips 3
    photos += [("d/3/IMG_0200.JPG", 3), ("d/4/IMG_0201.JPG", 4)]  # far on: a third
    photos += [("d/1/hand.png", 1)]  # no number: alone
    groups = domains.people(list(reversed(photos)))
    assert [[os.path.basename(p) for p, _ in g] for g in groups] == [
        [f"IMG_{100 + d}.JPG" for d in range(10)], [f"IMG_{110 + d}.JPG" for d in (0, 1, 2, 4, 5)],
        ["IMG_0200.JPG", "IMG_0201.JPG"], ["hand.png"]]


def test_the_test_split_is_whole_people_of_the_six_classes_and_stable():
    photos = [(f"d/{d}/IMG_{1000 + 10 * person + d}.JPG", d) for person in range(200) for d in range(10)]
    train, test, (n_train, n_test) = accuracy.split_people(photos, 20)
    assert n_train + n_test == 200 and 25 <= n_test <= 55  # about 20 % of the people
    assert len(train) + len(test) == 200 * 6 and {d for _, d in train + test} == set(range(6))
    person = lambda path: (int(os.path.basename(path)[4:8]) - 1000) // 10  # noqa: E731
    assert not {person(p) for p, _ in train} & {person(p) for p, _ in test}
    assert accuracy.split_people(list(reversed(photos)), 20)[1] == test


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
    mask = domains.hand_mask(Image.open(path).convert("RGB"))
    assert mask[hand].mean() > 0.9 and mask[~hand].mean() < 0.1


def test_every_shift_is_the_same_size_seeded_by_the_photo_and_changes_it(hand_photos):
    paths, _ = hand_photos
    original = np.asarray(Image.open(paths[0]).convert("RGB"), np.float32)
    for name in (*domains.SHIFTS, domains.ALL):
        image = domains.shifted(paths[0], name)
        assert image.size == (100, 100) and image.mode == "RGB", name
        assert np.array_equal(np.asarray(image), np.asarray(domains.shifted(paths[0], name))), name
        assert np.abs(np.asarray(image, np.float32) - original).mean() > 2, f"{name} left the photo as it was"
        assert not np.array_equal(np.asarray(image), np.asarray(domains.shifted(paths[1], name))), name
        assert Image.open(io.BytesIO(domains.png_bytes(image))).size == (100, 100)


def test_a_new_background_keeps_the_hand(hand_photos):
    paths, hand = hand_photos
    inner = np.asarray(Image.fromarray(hand.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(7)))  # the hand, 3 px in
    changed = 0
    for path in paths:
        pixels = np.asarray(domains.shifted(path, "background"), np.float32)
        np.testing.assert_allclose(pixels[inner > 0], np.broadcast_to(SKIN, pixels[inner > 0].shape), atol=2)
        changed += np.abs(pixels[:10, :10] - WALL).max() > 20
    assert changed >= 3  # a new wall (a random colour may, rarely, be close to the old one)


def test_scale_makes_the_hand_smaller(hand_photos):
    paths, hand = hand_photos
    for path in paths:
        mask = domains.hand_mask(domains.shifted(path, "scale")) > 0.5
        assert 0.3 * hand.sum() < mask.sum() < 0.8 * hand.sum()
