"""The input pipeline: ExampleGen's records, through TFX's data accessor, to (image, label) batches.

    data accessor (TFXIO: gzip TFRecords, parsed with the schema, in batches of 256)
      -> parallel PNG decode -> unbatch -> cache (uint8, when the split fits) -> shuffle
      -> batch -> float [0, 1] -> augmentation (training only) -> prefetch

Everything after the cache runs each epoch; everything before it runs once. Decoded 64x64x3 uint8
images are 12 KiB each, so 10,000 images cache in 120 MiB.
"""

import os
from typing import Any, List, Optional

import tensorflow as tf

from trainer import augment as augment_lib

IMAGE_SHAPE = (64, 64, 3)
IMAGE_BYTES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
LABEL_KEY = "label"
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}
READ_BATCH = 256  # records parsed and decoded together, before the training batch is formed


def decode_png_batch(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes a batch of 64x64 PNG strings into float32 images scaled to [0, 1]."""
    return tf.cast(decode_png_batch_uint8(encoded), tf.float32) / 255.0


def decode_png_batch_uint8(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes a batch of 64x64 PNG strings into uint8 images (B, 64, 64, 3)."""
    def decode(png):
        return tf.ensure_shape(tf.io.decode_png(png, channels=3), IMAGE_SHAPE)
    return tf.map_fn(decode, tf.reshape(encoded, [-1]),
                     fn_output_signature=tf.TensorSpec(IMAGE_SHAPE, tf.uint8))


def _files(file_patterns: List[str]) -> List[str]:
    files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no TFRecord files match {file_patterns}")
    return files


def count_records(file_patterns: List[str]) -> int:
    """Counts the examples in a split's gzip TFRecords (one cheap pass, no parsing)."""
    ds = tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP")
    return int(ds.reduce(0, lambda n, _: n + 1))


def augmenter(config) -> Any:
    """Random changes a hand sign survives, as Keras preprocessing layers (run inside tf.data).

    Left and right hands (a horizontal flip), a hand a little off-centre (shift), tilted (turn),
    nearer or farther (zoom), other light (brightness, contrast) and other white balance or
    camera colour (hue, saturation). No vertical flip: an upside-down hand is not a sign people
    make. Edges are filled by repeating the nearest pixel.

    Args:
      config: a `components.training.train_config.TrainConfig`; its flip, rotation_degrees, shift, zoom, brightness,
        contrast, hue, saturation and seed fields set the layers. A zero turns that change off.
    """
    import keras  # pylint: disable=import-outside-toplevel

    seed, stack = config.seed, []
    if config.flip:
        stack.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.shift:
        stack.append(keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="nearest", seed=seed))
    if config.rotation_degrees:
        stack.append(keras.layers.RandomRotation(config.rotation_degrees / 360.0, fill_mode="nearest", seed=seed))
    if config.zoom or config.zoom_out:  # Keras: a positive factor zooms out, a negative one in
        stack.append(keras.layers.RandomZoom((-config.zoom, max(config.zoom, config.zoom_out)),
                                             fill_mode="nearest", seed=seed))
    if config.brightness:
        stack.append(keras.layers.RandomBrightness(config.brightness, value_range=(0.0, 1.0), seed=seed))
    if config.contrast:
        stack.append(keras.layers.RandomContrast(config.contrast, value_range=(0.0, 1.0), seed=seed))
    if config.hue:  # Keras turns the hue by up to half its factor, either way
        stack.append(keras.layers.RandomHue(min(1.0, 2 * config.hue), value_range=(0.0, 1.0), seed=seed))
    if config.saturation:  # Keras multiplies the saturation by f / (1 - f), f drawn from this range
        s = min(config.saturation, 0.9)
        stack.append(keras.layers.RandomSaturation(((1 - s) / 2, (1 + s) / 2), value_range=(0.0, 1.0), seed=seed))
    return keras.Sequential(stack, name="augment")


def augmentation(config):
    """The training batches' augmentation, (images, labels) -> (images, labels), for `Dataset.map`.

    A new wall first (`config.background`; the mask is found best on the untouched photo), then
    the Keras layers of `augmenter`, then a colour cast (`config.colour_cast`). With
    `config.photo_augment` off, the photo augmentation's knobs count as 0. Last, mixup or cutmix
    (`config.mixup`, `config.cutmix`), which need one-hot labels (`make_dataset` gives them).
    """
    config = config.augmentation()  # photo_augment "off": its knobs at 0
    layers = augmenter(config)
    mixing = config.mixup or config.cutmix
    rng = tf.random.Generator.from_seed(config.seed) if config.background or config.colour_cast or mixing else None

    def augment(images, labels):
        if config.background:
            images = augment_lib.replace_background(images, rng, config.background)
        if layers.layers:
            images = tf.clip_by_value(layers(images, training=True), 0.0, 1.0)
        if config.colour_cast:
            images = augment_lib.colour_cast(images, rng, config.colour_cast)
        if mixing:  # last: the pairs are mixed as the model will see them
            images, labels = augment_lib.mix(images, labels, rng, config.mixup, config.cutmix)
        return images, labels
    return augment


def train_steps(n_examples: Optional[int], batch_size: int) -> int:
    """Steps of a train epoch: whole batches only, once the split holds at least one (else 1 step).

    A train epoch leaves out the last `n_examples % batch_size` images of its shuffle, a different
    few each epoch. A smaller last batch would make Keras trace the train step a second time, for
    the new shape, a large part of a CPU's first epoch (bench/README.md). 0 when the size is
    unknown (the split is then read to its end, last batch and all).
    """
    if not n_examples:
        return 0
    return max(1, n_examples // batch_size)


def make_dataset(data_accessor, file_patterns: List[str], schema, batch_size: int, *,
                 training: bool, config, n_examples: Optional[int] = None,
                 autotune: bool = True) -> tf.data.Dataset:
    """Reads a split of ExampleGen's records into (images, labels) batches.

    Args:
      data_accessor: TFX's `fn_args.data_accessor`: its `tf_dataset_factory` reads the Examples
        artifact in its own payload format and parses the records with `schema`.
      file_patterns: the split's file patterns (`fn_args.train_files` or `eval_files`).
      schema: the `schema_pb2.Schema` the records were validated against.
      batch_size: images per batch; the last batch of an eval epoch may be smaller.
      training: shuffle each epoch, keep whole batches only (see `train_steps`), and augment
        (if `config.augment`).
      config: the `components.training.train_config.TrainConfig` (shuffle_buffer, cache_limit_mb, seed, augmentation).
      n_examples: the split's size, if known; decides whether the decoded split is cached.
      autotune: let tf.data tune its parallelism and buffers (for GPUs, whose input must keep up
        with a fast device). Off, the maps use one thread per core and prefetch 2 batches: on a
        CPU the input pipeline shares the cores with the model, and the autotuner's own work and
        threads cost training steps (bench/README.md, "Training throughput on the CPU").

    Returns:
      A dataset of (float32 images (B, 64, 64, 3) in [0, 1], int64 labels (B,)), finite: one
      epoch per iteration; the labels are float32 one-hot (B, num_classes) where
      `config.soft_labels()` (label smoothing, mixup or cutmix).
    """
    from tfx_bsl.public import tfxio  # pylint: disable=import-outside-toplevel

    parallel = tf.data.AUTOTUNE if autotune else max(1, len(os.sched_getaffinity(0)))
    options = tfxio.TensorFlowDatasetOptions(batch_size=READ_BATCH, shuffle=False, num_epochs=1,
                                             label_key=LABEL_KEY)
    ds = data_accessor.tf_dataset_factory(file_patterns, options, schema)
    ds = ds.map(lambda features, label: (decode_png_batch_uint8(features["image"]), tf.reshape(label, [-1])),
                num_parallel_calls=parallel)
    ds = ds.unbatch()
    cached = n_examples is not None and n_examples * IMAGE_BYTES <= config.cache_limit_mb * 2 ** 20
    if cached:
        ds = ds.cache()
    if training:
        # A cached split is in memory anyway: shuffle it whole. Records are written in source
        # order (class folders are shuffled by ExampleGen, an h5 file is not), so a partial
        # shuffle of a large uncached split mixes only `shuffle_buffer` neighbours.
        buffer = n_examples if cached else config.shuffle_buffer
        ds = ds.shuffle(buffer, seed=config.seed, reshuffle_each_iteration=True)
    # Whole train batches once the split has one (see `train_steps`); a smaller split is one batch.
    ds = ds.batch(batch_size, drop_remainder=training and (n_examples or 0) >= batch_size)
    one_hot = config.soft_labels()  # smoothed or mixed labels: one-hot, in both splits (the same metric)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, tf.one_hot(y, config.num_classes) if one_hot else y),
                num_parallel_calls=parallel)
    if training and config.augment:
        ds = ds.map(augmentation(config), num_parallel_calls=parallel)
    ds = ds.prefetch(tf.data.AUTOTUNE if autotune else 2)
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds


def records_accessor():
    """A data accessor for gzip TFRecords of tf.Example outside a TFX run (benchmarks, tests).

    It is TFX's own: the factory the Trainer gets for an Examples artifact, built here for
    files not registered as one.
    """
    from tfx.components.trainer.fn_args_utils import DataAccessor  # pylint: disable=import-outside-toplevel
    from tfx_bsl.public import tfxio  # pylint: disable=import-outside-toplevel

    def factory(file_patterns, options, schema):
        return tfxio.TFExampleRecord(file_pattern=file_patterns, schema=schema).TensorFlowDataset(options)

    return DataAccessor(tf_dataset_factory=factory, record_batch_factory=None, data_view_decode_fn=None)
