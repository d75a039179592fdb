"""Augmentation for photos from elsewhere: another wall behind the hand, another white balance.

A collection of photos taken in one room, with one camera, teaches a network that room's look as
much as the sign: trained on the shared photos (a pale wall, one light), the model held up on
held-out people and failed on the same photos with another background (bench/README.md,
"Accuracy on real photos"). These changes run on batches of float images in [0, 1], inside
tf.data, beside the Keras layers of `input_pipeline.augmenter`:

- `replace_background`: the wall is told from the hand by colour (chromaticity, away from the
  wall's, which is the median of the image's border) and replaced by a flat colour, a gradient
  or a smooth blotchy texture;
- `colour_cast`: each channel scaled by its own random gain, the way another white balance or
  another camera's colour response changes a photo.
"""

import tensorflow as tf

# The share of the frame the mask must give the hand for a new wall: where it finds (almost) no hand
# or (almost) nothing but, the wall was not told apart, and a new one would paint over the sign.
# The shared photos' hands fill 14-41 % of the frame, the drawn hands 12-21 %.
HAND_SHARE = (0.05, 0.6)
# A pixel whose chromaticity (r, g, b) / (r + g + b) is this far from the wall's counts as wall
# below, and as hand above, the second, fading in between. Skin on the shared photos' pale wall
# sits ~0.06-0.12 away; the wall's own shading and shadows stay under ~0.02.
WALL_CHROMA = (0.025, 0.05)
_EPS = 1e-3


def wall_colour(images: tf.Tensor) -> tf.Tensor:
    """The median colour of each image's border pixels (B, 3): the wall, where the hand fills the middle."""
    border = tf.concat([images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1)
    n = tf.shape(border)[1]
    return tf.sort(border, axis=1)[:, n // 2]


def _chroma(pixels: tf.Tensor) -> tf.Tensor:
    return pixels / (tf.reduce_sum(pixels, axis=-1, keepdims=True) + _EPS)


def hand_mask(images: tf.Tensor) -> tf.Tensor:
    """How much each pixel is hand (1) rather than wall (0), (B, H, W, 1), softened over 3x3 pixels."""
    wall = _chroma(wall_colour(images))[:, None, None, :]
    distance = tf.norm(_chroma(images) - wall, axis=-1, keepdims=True)
    low, high = WALL_CHROMA
    mask = tf.clip_by_value((distance - low) / (high - low), 0.0, 1.0)
    return tf.nn.avg_pool2d(mask, 3, 1, "SAME")


def random_backgrounds(shape: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    """(B, H, W, 3) backgrounds in [0, 1]: each a flat colour, a gradient or a smooth texture, at random."""
    b, h, w = shape[0], shape[1], shape[2]
    a, c = rng.uniform([b, 1, 1, 3]), rng.uniform([b, 1, 1, 3])
    flat = tf.broadcast_to(a, [b, h, w, 3])
    # A gradient from colour a to colour c, top to bottom or left to right.
    rows = tf.reshape(tf.linspace(0.0, 1.0, h), [1, h, 1, 1]) * tf.ones([1, 1, w, 1])
    cols = tf.reshape(tf.linspace(0.0, 1.0, w), [1, 1, w, 1]) * tf.ones([1, h, 1, 1])
    t = tf.where(rng.uniform([b, 1, 1, 1]) < 0.5, rows, cols)
    gradient = a * (1 - t) + c * t
    # A texture: 4x4 random colours blended smoothly over the image (cloth, foliage, a poster).
    texture = tf.clip_by_value(tf.image.resize(rng.uniform([b, 4, 4, 3]), [h, w], "bicubic"), 0.0, 1.0)
    kind = rng.uniform([b, 1, 1, 1], maxval=3.0)
    return tf.where(kind < 1, flat, tf.where(kind < 2, gradient, texture))


def replace_background(images: tf.Tensor, rng: tf.random.Generator, rate: float) -> tf.Tensor:
    """Puts a random background behind the hand in a share `rate` of the images (0 = none, 1 = all).

    An image whose mask gives the hand less or more than `HAND_SHARE` of the frame keeps its own.
    """
    shape = tf.shape(images)
    mask = hand_mask(images)
    swapped = images * mask + random_backgrounds(shape, rng) * (1 - mask)
    share = tf.reduce_mean(mask, axis=[1, 2, 3], keepdims=True)
    chosen = (rng.uniform([shape[0], 1, 1, 1]) < rate) & (share >= HAND_SHARE[0]) & (share <= HAND_SHARE[1])
    return tf.where(chosen, swapped, images)


def colour_cast(images: tf.Tensor, rng: tf.random.Generator, strength: float) -> tf.Tensor:
    """Scales each channel of each image by a gain drawn from [1 - strength, 1 + strength]."""
    gains = rng.uniform([tf.shape(images)[0], 1, 1, 3], 1.0 - strength, 1.0 + strength)
    return tf.clip_by_value(images * gains, 0.0, 1.0)


def _beta(rng: tf.random.Generator, n, alpha: float) -> tf.Tensor:
    """n draws of Beta(alpha, alpha), as X / (X + Y) of two Gamma(alpha) draws."""
    seeds = rng.make_seeds(2)
    x = tf.random.stateless_gamma([n], seeds[:, 0], alpha)
    y = tf.random.stateless_gamma([n], seeds[:, 1], alpha)
    return x / tf.maximum(x + y, 1e-12)


def _partners(rng: tf.random.Generator, n) -> tf.Tensor:
    """A random permutation of 0 .. n-1: the image each image is mixed with."""
    return tf.argsort(rng.uniform([n]))


def mixup(images: tf.Tensor, labels: tf.Tensor, rng: tf.random.Generator, alpha: float):
    """Blends each image with another of the batch, and its one-hot label in the same share
    (Zhang et al., 2018). The share is drawn from Beta(alpha, alpha), the larger part the image's own."""
    n = tf.shape(images)[0]
    share = _beta(rng, n, alpha)
    share = tf.maximum(share, 1 - share)
    other = _partners(rng, n)
    images = images * share[:, None, None, None] + tf.gather(images, other) * (1 - share[:, None, None, None])
    return images, labels * share[:, None] + tf.gather(labels, other) * (1 - share[:, None])


def cutmix(images: tf.Tensor, labels: tf.Tensor, rng: tf.random.Generator, alpha: float):
    """Pastes a box of another image of the batch into each image, and mixes the one-hot labels by
    the box's area (Yun et al., 2019): the box covers 1 - Beta(alpha, alpha) of the frame, clipped
    at the edges."""
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    side = tf.sqrt(1 - _beta(rng, n, alpha))
    centre_y, centre_x = rng.uniform([n]) * tf.cast(h, tf.float32), rng.uniform([n]) * tf.cast(w, tf.float32)
    half_h, half_w = side * tf.cast(h, tf.float32) / 2, side * tf.cast(w, tf.float32) / 2
    rows = tf.cast(tf.range(h), tf.float32)[None, :, None] + 0.5
    cols = tf.cast(tf.range(w), tf.float32)[None, None, :] + 0.5
    inside = ((tf.abs(rows - centre_y[:, None, None]) < half_h[:, None, None])
              & (tf.abs(cols - centre_x[:, None, None]) < half_w[:, None, None]))
    box = tf.cast(inside, images.dtype)[..., None]
    other = _partners(rng, n)
    images = images * (1 - box) + tf.gather(images, other) * box
    kept = 1 - tf.reduce_mean(box, axis=[1, 2, 3])
    return images, labels * kept[:, None] + tf.gather(labels, other) * (1 - kept[:, None])


def mix(images: tf.Tensor, labels: tf.Tensor, rng: tf.random.Generator, mixup_alpha: float, cutmix_alpha: float):
    """mixup, cutmix, or (both set) one of the two for the whole batch, at even odds."""
    if mixup_alpha and not cutmix_alpha:
        return mixup(images, labels, rng, mixup_alpha)
    if cutmix_alpha and not mixup_alpha:
        return cutmix(images, labels, rng, cutmix_alpha)
    blended, cut = mixup(images, labels, rng, mixup_alpha), cutmix(images, labels, rng, cutmix_alpha)
    use_mixup = rng.uniform([]) < 0.5
    return tf.where(use_mixup, blended[0], cut[0]), tf.where(use_mixup, blended[1], cut[1])
