"""A deterministic synthetic SIGNS-format data set: hands showing 0 to 5 fingers, 64x64 RGB."""

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Finger slots as (angle from vertical in degrees, length factor); the thumb is slot 0.
_FINGER_SLOTS = ((-62, 0.62), (-27, 0.95), (-8, 1.0), (10, 0.95), (27, 0.78))
# Which slots are raised for each count, after the ASL digit signs the SIGNS set photographs.
_RAISED = {0: (), 1: (1,), 2: (1, 2), 3: (0, 1, 2), 4: (1, 2, 3, 4), 5: (0, 1, 2, 3, 4)}
_SKIN = ((224, 172, 140), (198, 134, 96), (241, 194, 160), (141, 85, 56), (232, 185, 150))
_CANVAS = 128  # drawn at twice the size, then downsampled with antialiasing


def _draw_hand(count: int, rng: np.random.Generator) -> np.ndarray:
    """Draws one hand raising `count` fingers; returns a (64, 64, 3) uint8 image."""
    bg = np.array([235, 225, 215]) + rng.integers(-25, 15, size=3)
    gradient = np.linspace(-12, 12, _CANVAS)[:, None, None] * rng.uniform(-1, 1)
    canvas = np.clip(bg[None, None, :] + gradient + np.zeros((_CANVAS, _CANVAS, 3)), 0, 255)
    img = Image.fromarray(canvas.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    skin = np.array(_SKIN[rng.integers(len(_SKIN))]) + rng.integers(-12, 12, size=3)
    skin = tuple(int(c) for c in np.clip(skin, 0, 255))
    cx, cy = 64 + rng.normal(0, 4), 82 + rng.normal(0, 4)
    pw, ph = rng.uniform(19, 23), rng.uniform(18, 22)
    draw.rectangle((cx - pw * 0.7, cy, cx + pw * 0.7, _CANVAS), fill=skin)  # wrist
    draw.ellipse((cx - pw, cy - ph, cx + pw, cy + ph), fill=skin)  # palm
    finger_w = rng.uniform(7.5, 9.5)
    for slot, (angle, length) in enumerate(_FINGER_SLOTS):
        theta = math.radians(angle + rng.normal(0, 4))
        bx = cx + math.sin(theta) * pw * (0.95 if slot else 0.8)
        by = cy - math.cos(theta) * ph * (0.85 if slot else 0.1)
        reach = (length * rng.uniform(30, 36)) if slot in _RAISED[count] else 6.0
        tx, ty = bx + math.sin(theta) * reach, by - math.cos(theta) * reach
        draw.line((bx, by, tx, ty), fill=skin, width=int(finger_w))
        r = finger_w / 2
        draw.ellipse((tx - r, ty - r, tx + r, ty + r), fill=skin)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    if rng.random() < 0.5:  # left or right hand
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR,
                     translate=tuple(rng.normal(0, 5, size=2)), fillcolor=tuple(int(c) for c in bg))
    img = img.resize((64, 64), Image.Resampling.LANCZOS)
    pixels = np.asarray(img, dtype=np.float32) * rng.uniform(0.85, 1.1) + rng.normal(0, 4, (64, 64, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns `n` images (n, 64, 64, 3) uint8 and labels (n,) int64, classes balanced, seeded."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 6
    rng.shuffle(labels)
    images = np.stack([_draw_hand(int(y), rng) for y in labels])
    return images, labels


def write_signs_h5(directory: str, n_train: int = 1800, n_test: int = 300, seed: int = 0) -> str:
    """Writes `train_signs.h5` and `test_signs.h5` with the SIGNS keys into `directory`.

    The files are written only when absent, so a re-run keeps their timestamps and ExampleGen's
    input fingerprint, and the pipeline's cache stays valid. Each file is written aside and
    renamed into place, so an interrupted run never leaves half a file.

    Args:
      directory: where to write; created if missing.
      n_train: images in the train file (SIGNS has 1080; more synthetic images generalise better).
      n_test: images in the test file (SIGNS has 120; 300 gives a steadier accuracy figure).
      seed: seeds the generator; the same seed always gives the same bytes of pixels.

    Returns:
      `directory`.
    """
    import h5py  # pylint: disable=import-outside-toplevel

    os.makedirs(directory, exist_ok=True)
    for prefix, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        path = os.path.join(directory, f"{prefix}_signs.h5")
        if os.path.exists(path):
            continue
        x, y = make_split(n, split_seed)
        tmp = path + ".tmp"
        with h5py.File(tmp, "w") as f:
            f.create_dataset(f"{prefix}_set_x", data=x)
            f.create_dataset(f"{prefix}_set_y", data=y)
            f.create_dataset("list_classes", data=np.arange(6, dtype=np.int64))
        os.replace(tmp, path)
    return directory
