"""The input pipeline: gzip TFRecords of tf.Example -> batches of (float image, int label)."""

from typing import List

import tensorflow as tf

IMAGE_SHAPE = (64, 64, 3)
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def decode_png_batch(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes a batch of 64x64 PNG strings into float32 images scaled to [0, 1]."""
    def decode(png):
        image = tf.io.decode_png(png, channels=3)
        return tf.ensure_shape(image, IMAGE_SHAPE)
    images = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(IMAGE_SHAPE, tf.uint8))
    return tf.cast(images, tf.float32) / 255.0


def _files(file_patterns: List[str]) -> List[str]:
    files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no TFRecord files match {file_patterns}")
    return files


def count_records(file_patterns: List[str]) -> int:
    """Counts the examples in a split's gzip TFRecords (one cheap pass, no parsing)."""
    ds = tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP")
    return int(ds.reduce(0, lambda n, _: n + 1))


def augmenter(seed: int = 0):
    """Random changes a hand sign survives: left/right hand, small shifts, turns, zoom, light."""
    import keras  # pylint: disable=import-outside-toplevel

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="nearest", seed=seed),
        keras.layers.RandomRotation(0.04, fill_mode="nearest", seed=seed),  # +-14 degrees
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed),
        keras.layers.RandomContrast(0.2, seed=seed),
    ], name="augment")


def make_dataset(file_patterns: List[str], batch_size: int, shuffle: bool, seed: int = 0,
                 shuffle_buffer: int = 2048, augment: bool = False) -> tf.data.Dataset:
    """Reads ExampleGen's gzip TFRecords into (images, labels) batches.

    Args:
      file_patterns: glob patterns of the split's TFRecord files (TFX's `fn_args.train_files`).
      batch_size: examples per batch; the last batch may be smaller.
      shuffle: shuffle the examples each epoch (for training).
      seed: shuffle seed.
      shuffle_buffer: examples held in the shuffle buffer.
      augment: apply `augmenter()` to each training batch.

    Returns:
      A dataset of (float32 images (B, 64, 64, 3) in [0, 1], int64 labels (B,)), cached in memory
      after the first pass.
    """
    ds = tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.cache()  # serialized records: small, and decoding per epoch is cheap next to the model
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda b: tf.io.parse_example(b, FEATURES), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda f: (decode_png_batch(f["image"]), f["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        layers = augmenter(seed)
        ds = ds.map(lambda x, y: (tf.clip_by_value(layers(x, training=True), 0.0, 1.0), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
