"""Shifted photos: the changes a real user's photo brings and a one-room collection never varies.

A model trained on photos from one camera, one light and a pale wall learns that look along with
the sign. These shifts put it back in front of the model; the Review and `bench/accuracy.py`
measure accuracy under each. Each is drawn per photo from a seed of a key (its file name), so
every run measures the same images:

- `background`: the wall replaced by a colour, a gradient or a texture (the hand is kept by its
  skin chroma, Cr in YCbCr, against the wall's);
- `colour`: a warm, cool or green cast and a saturation change (other white balance);
- `scale`: the hand at 60-85 % of the frame, off centre (held further from the camera);
- `camera`: a 32-48 pixel sensor, blur, noise and heavy JPEG (a cheaper camera);
- `light`: dimmer or brighter, with less or more contrast;
- `all`: the five together, in that order: the figure closest to "another camera, another room".

The Trainer's own augmentation (`trainer/augment.py`) finds the wall another way (chromaticity
against the border's median), with other backgrounds, so a model is not scored on the very
transform it trained on. Both rest on one idea, a pale wall and a skin-coloured hand, so these
shifts reward what that augmentation does.

The **phone** shifts are the truer proxy: the ways photos people take of their own hands differ
from a collection shot square-on in one room, made with no mask and no rule about walls or skin,
only geometry and light on the whole photo (the wall goes on past the photo as its edge pixels
repeated, so a wrist at the bottom edge goes on as a forearm):

- `tilt`: the hand turned 20-45 degrees either way;
- `distance`: the hand at 45-70 % of the frame, high in it, the forearm below;
- `angle`: the phone not square to the hand (a perspective warp, corners moved up to 18 %);
- `shadow`: a soft shadow across the photo (35-60 % darker past a blurred edge);
- `room`: the photo at 70-85 % of the frame, its edges faded into another wall;
- `phone`: tilt, distance, angle and shadow together.
"""

import io
import zlib
from typing import Callable, Dict, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def _rng(key: str, shift: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{key}/{shift}".encode()))


def _new_background(size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = size
    kind = rng.integers(3)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # a painted wall
        return np.broadcast_to(a, (h, w, 3)).astype(np.float32)
    if kind == 1:  # a gradient, in a random direction
        t = np.linspace(0, 1, h)[:, None] if rng.random() < 0.5 else np.linspace(0, 1, w)[None, :]
        return (a * (1 - t[..., None]) + b * t[..., None]).astype(np.float32) * np.ones((h, w, 1), np.float32)
    noise = rng.uniform(0, 1, (h // 4 + 1, w // 4 + 1))  # a coarse texture: fabric, foliage, a poster
    texture = np.asarray(Image.fromarray((noise * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                         np.float32)[..., None] / 255
    return a * (1 - texture) + b * texture


def skin_mask(image: Image.Image) -> np.ndarray:
    """How much each pixel is hand (1) rather than wall (0): skin is redder in chroma (Cr) than the wall.

    The wall's Cr is the median of the border pixels; a pixel 6 or more above it counts as skin,
    fading in over the 4 below, and the mask is softened by a 1.5-pixel blur.
    """
    cr = np.asarray(image.convert("YCbCr"), np.float32)[..., 2]
    border = np.concatenate([cr[0], cr[-1], cr[:, 0], cr[:, -1]])
    mask = np.clip((cr - np.median(border) - 2) / 4, 0, 1)
    blurred = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    return np.asarray(blurred, np.float32) / 255


def background(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    mask = skin_mask(image)[..., None]
    pixels = np.asarray(image, np.float32)
    out = pixels * mask + _new_background(image.size, rng) * (1 - mask)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def colour(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    casts = ((1.25, 1.0, 0.7), (0.75, 0.95, 1.3), (0.9, 1.15, 0.85))
    gains = np.array(casts[rng.integers(len(casts))], np.float32)
    cast = Image.fromarray(np.clip(np.asarray(image, np.float32) * gains, 0, 255).astype(np.uint8))
    return ImageEnhance.Color(cast).enhance(rng.uniform(0.4, 1.6))


def scale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    factor = rng.uniform(0.6, 0.85)
    small = np.asarray(image.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.LANCZOS))
    left, top = int(rng.integers(0, w - small.shape[1] + 1)), int(rng.integers(0, h - small.shape[0] + 1))
    # The wall goes on past the smaller photo: its edge pixels, repeated outwards.
    return Image.fromarray(np.pad(small, ((top, h - small.shape[0] - top), (left, w - small.shape[1] - left), (0, 0)),
                                  mode="edge"))


def camera(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(32, 49))
    low = image.resize((side, side), Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BILINEAR)
    low = low.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    noisy = np.asarray(low, np.float32) + rng.normal(0, 6, (image.height, image.width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(15, 36)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    brightness = rng.uniform(0.5, 0.75) if rng.random() < 0.6 else rng.uniform(1.15, 1.35)
    return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(rng.uniform(0.6, 1.5))


SHIFTS: Dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "background": background, "colour": colour, "scale": scale, "camera": camera, "light": light}
ALL = "all"


def shifted(image: Image.Image, name: str, key: str) -> Image.Image:
    """`image` under the shift `name` (one of SHIFTS, or ALL for the five in order).

    Each shift draws its changes from a seed of `key` (a file name, say): the same image and key
    always give the same picture.
    """
    image = image.convert("RGB")
    for step in (SHIFTS if name == ALL else (name,)):
        image = SHIFTS[step](image, _rng(key, step))
    return image


NAMES = (*SHIFTS, ALL)  # every shift, then the five together


def _edge_padded(image: Image.Image, pad: int) -> Image.Image:
    return Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))


def tilt(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    angle = rng.uniform(20, 45) * (1 if rng.random() < 0.5 else -1)
    pad = max(w, h) // 2
    turned = _edge_padded(image, pad).rotate(angle, resample=Image.Resampling.BICUBIC)
    return turned.crop((pad, pad, pad + w, pad + h))


def distance(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    factor = rng.uniform(0.45, 0.7)
    small = np.asarray(image.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.LANCZOS))
    left = int(rng.integers(0, w - small.shape[1] + 1))
    top = int(rng.integers(0, (h - small.shape[0]) // 3 + 1))  # high in the frame: the forearm below
    return Image.fromarray(np.pad(small, ((top, h - small.shape[0] - top), (left, w - small.shape[1] - left), (0, 0)),
                                  mode="edge"))


def angle(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    pad = max(w, h) // 2
    big = _edge_padded(image, pad)
    # Where each corner of the output comes from, in the padded photo: moved by up to 18 % of the side.
    corners = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float64)
    source = corners + pad + rng.uniform(-0.18, 0.18, (4, 2)) * (w, h)
    a = []
    for (x, y), (u, v) in zip(corners, source):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coefficients = np.linalg.solve(np.array(a), source.reshape(-1))
    return big.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coefficients), Image.Resampling.BICUBIC)


def shadow(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    theta = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w]
    along = (x - w / 2) * np.cos(theta) + (y - h / 2) * np.sin(theta)  # distance along a random direction
    edge = rng.uniform(-0.25, 0.25) * min(w, h)
    softness = rng.uniform(0.05, 0.15) * min(w, h)
    dark = 1 - rng.uniform(0.35, 0.6) / (1 + np.exp(-(along - edge) / softness))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) * dark[..., None], 0, 255).astype(np.uint8))


def room(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    factor = rng.uniform(0.7, 0.85)
    sw, sh = max(1, int(w * factor)), max(1, int(h * factor))
    small = np.asarray(image.resize((sw, sh), Image.Resampling.LANCZOS), np.float32)
    left, top = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
    # The photo's edges fade into the other wall over 15 % of its side.
    fade = max(1.0, 0.15 * min(sw, sh))
    ramp = lambda n: np.clip(np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / fade, 0, 1)  # noqa: E731
    alpha = (ramp(sh)[:, None] * ramp(sw)[None, :])[..., None]
    out = _new_background(image.size, rng).copy()
    out[top:top + sh, left:left + sw] = small * alpha + out[top:top + sh, left:left + sw] * (1 - alpha)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


PHONE_SHIFTS: Dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "tilt": tilt, "distance": distance, "angle": angle, "shadow": shadow, "room": room}
PHONE = "phone"
PHONE_TOGETHER = ("tilt", "distance", "angle", "shadow")
PHONE_NAMES = (*PHONE_SHIFTS, PHONE)  # the truer proxy: each phone shift, then four together


def phone_shifted(image: Image.Image, name: str, key: str) -> Image.Image:
    """`image` under the phone shift `name` (one of PHONE_SHIFTS, or PHONE for four together), seeded by `key`."""
    image = image.convert("RGB")
    for step in (PHONE_TOGETHER if name == PHONE else (name,)):
        image = PHONE_SHIFTS[step](image, _rng(key, step))
    return image


def encoded_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


PHONE_PROXY = "phone proxy"  # the group of PHONE_SHIFTS' rows
PALE_WALL_PROXY = "pale-wall proxy"  # the group of SHIFTS' rows
PHONE_MEAN = "mean of the five"  # the phone proxy's headline row: each image's share right over its five shifts


def score(classify: Callable, images, keys, labels, encoded=None):
    """Accuracy on `images` as they are, under each phone shift, their mean, and each pale-wall shift.

    Args:
      classify: list of encoded images -> predicted classes (a model's raw-bytes signature).
      images: PIL images; keys: a seed for each (its file name); labels: the true classes.
      encoded: the images' own encodings for the row "as they are" (default: PNG of `images`).

    Returns:
      A list of rows {"name", "group" ("" for the images as they are), "correct", "n", "accuracy",
      "low", "high" (the 95 % interval: Wilson's, or a percentile bootstrap over the images for the
      mean of the five), "sample" (the first image so shifted, encoded)}.
    """
    from components.evaluation import intervals  # pylint: disable=import-outside-toplevel

    labels = np.asarray(labels)
    sets = [("as they are", "", None)]
    sets += [(name, PHONE_PROXY, lambda image, key, name=name: phone_shifted(image, name, key)) for name in PHONE_NAMES]
    sets += [(name, PALE_WALL_PROXY, lambda image, key, name=name: shifted(image, name, key)) for name in NAMES]
    rows, right = [], {}

    def row(name, group, correct, low_high, sample):
        return {"name": name, "group": group, "correct": correct, "n": len(labels),
                "accuracy": correct / max(1, len(labels)), "low": low_high[0], "high": low_high[1], "sample": sample}

    for name, group, shift in sets:
        if shift is None:
            batch = list(encoded) if encoded is not None else [encoded_png(image) for image in images]
        else:
            batch = [encoded_png(shift(image, key)) for image, key in zip(images, keys)]
        right[name] = np.asarray(classify(batch)) == labels
        correct = int(np.sum(right[name]))
        rows.append(row(name, group, correct, intervals.wilson(correct, len(labels)), batch[0]))
        if name == PHONE:
            per_image = np.mean([right[n] for n in PHONE_SHIFTS], axis=0)
            rows.append(row(PHONE_MEAN, group, float(per_image.sum()), intervals.bootstrap(per_image), batch[0]))
    return rows
