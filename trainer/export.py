"""Exports the trained Keras model as a SavedModel with two serving signatures.

- `serving_default`: serialized tf.Example (`examples`, string (N,)) -> `probabilities` (N, classes).
  TFMA and batch scoring use it.
- `serve_image_bytes`: encoded JPEG or PNG bytes of any size (`image_bytes`, string (N,)) ->
  `probabilities` and `classes` (the argmax). People and services classifying photos use it.
"""

import keras
import tensorflow as tf

from components.data.sources import MAX_IMAGE_PIXELS
from components.training.train_config import IMAGE_BYTES_SIGNATURE
from trainer import input_pipeline

__all__ = ["IMAGE_BYTES_SIGNATURE", "header_pixels", "decode_image_bytes", "exif_orientation", "export_serving_model"]


def _unsigned(encoded: tf.Tensor, offset, size: int, big_endian=True) -> tf.Tensor:
    """The unsigned integer of `size` bytes at `offset` of a string scalar, as int64.

    Bytes past the end read as 0, so a truncated header gives a wrong number, never an error.
    `offset` may be a tensor, `big_endian` a boolean tensor.
    """
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    offset = tf.clip_by_value(tf.cast(offset, tf.int64), 0, length)
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, size), tf.uint8), tf.int64)
    raw = tf.pad(raw, [[0, size - tf.shape(raw)[0]]])
    big = tf.reduce_sum(raw * tf.constant([256 ** (size - 1 - i) for i in range(size)], tf.int64))
    little = tf.reduce_sum(raw * tf.constant([256 ** i for i in range(size)], tf.int64))
    return tf.where(big_endian, big, little)


def _bytes_at(encoded: tf.Tensor, offset, size: int) -> tf.Tensor:
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    return tf.strings.substr(encoded, tf.clip_by_value(tf.cast(offset, tf.int64), 0, length), size)


def _exif_offset(encoded: tf.Tensor) -> tf.Tensor:
    """Where the EXIF block (its TIFF header) starts: a JPEG's APP1 "Exif" segment or a PNG's eXIf
    chunk, as Pillow finds them. -1 if there is none. Reads at most 64 segments or chunks."""
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    none = tf.constant(-1, tf.int64)

    def scan(start, step):
        def more(pos, found, i):
            return tf.logical_and(tf.logical_and(found < 0, i < 64), pos + 8 <= length)

        _, found, _ = tf.while_loop(more, lambda pos, found, i: (*step(pos), i + 1),
                                    (tf.constant(start, tf.int64), none, tf.constant(0)))
        return found

    def jpeg_segment(pos):  # FFxx marker, 2-byte length (counting itself), payload
        marker, size = _unsigned(encoded, pos, 2), _unsigned(encoded, pos + 2, 2)
        exif = tf.logical_and(tf.equal(marker, 0xFFE1), tf.equal(_bytes_at(encoded, pos + 4, 6), b"Exif\0\0"))
        end = tf.logical_or(tf.equal(marker, 0xFFDA), tf.not_equal(marker // 256, 0xFF))  # start of scan, or lost
        return tf.where(end, length, pos + 2 + size), tf.where(exif, pos + 10, none)

    def png_chunk(pos):  # 4-byte length, 4-byte type, data, CRC; eXIf comes before the image data
        size, kind = _unsigned(encoded, pos, 4), _bytes_at(encoded, pos + 4, 4)
        end = tf.logical_or(tf.equal(kind, b"IDAT"), tf.equal(kind, b"IEND"))
        return tf.where(end, length, pos + 12 + size), tf.where(tf.equal(kind, b"eXIf"), pos + 8, none)

    return tf.case([(tf.image.is_jpeg(encoded), lambda: scan(2, jpeg_segment)),
                    (tf.equal(_bytes_at(encoded, 0, 8), b"\x89PNG\r\n\x1a\n"), lambda: scan(8, png_chunk))],
                   default=lambda: none, exclusive=False)


def exif_orientation(encoded: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (1-8, TIFF tag 0x0112 of the first IFD, SHORT or LONG) of an encoded
    JPEG or PNG; 1 if it has none or an invalid one. ExampleGen reads it with the same rule
    (`components.data.sources.exif_orientation`), so training and serving turn a photo upright
    alike: an APP1 Exif segment within a JPEG's first 64, an eXIf chunk before a PNG's image data.
    Orientation given only in XMP, in a PNG text chunk or after the image data is read by neither."""
    tiff = _exif_offset(encoded)

    def read():
        big_endian = tf.equal(_bytes_at(encoded, tiff, 2), b"MM")
        ifd = tiff + _unsigned(encoded, tiff + 4, 4, big_endian)
        entries = tf.minimum(_unsigned(encoded, ifd, 2, big_endian), 256)

        def more(j, value):
            return tf.logical_and(j < entries, value < 0)

        def entry(j, value):
            at = ifd + 2 + 12 * j
            tag = _unsigned(encoded, at, 2, big_endian)
            long = tf.equal(_unsigned(encoded, at + 2, 2, big_endian), 4)  # type LONG: 4 bytes, else SHORT
            read = tf.where(long, _unsigned(encoded, at + 8, 4, big_endian), _unsigned(encoded, at + 8, 2, big_endian))
            return j + 1, tf.where(tf.equal(tag, 0x0112), read, value)

        _, value = tf.while_loop(more, entry, (tf.constant(0, tf.int64), tf.constant(-1, tf.int64)))
        return value

    value = tf.cond(tiff >= 0, read, lambda: tf.constant(1, tf.int64))
    return tf.where(tf.logical_and(value >= 1, value <= 8), value, 1)


def _upright(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Applies an EXIF orientation as Pillow's `exif_transpose` does (tf.image.rot90 turns counter-clockwise)."""
    return tf.switch_case(tf.cast(orientation - 1, tf.int32), [
        lambda: image,                                              # 1: upright
        lambda: tf.image.flip_left_right(image),                    # 2: mirrored
        lambda: tf.image.rot90(image, 2),                           # 3: upside down
        lambda: tf.image.flip_up_down(image),                       # 4
        lambda: tf.image.transpose(image),                          # 5
        lambda: tf.image.rot90(image, 3),                           # 6: a phone held upright
        lambda: tf.image.rot90(tf.image.transpose(image), 2),       # 7
        lambda: tf.image.rot90(image, 1),                           # 8
    ])


def header_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """Width x height that an encoded image's header declares (int64), read without decoding it.

    PNG (IHDR), JPEG (SOF, through `tf.image.extract_jpeg_shape`), GIF (logical screen) and BMP
    (info header); 0 for anything else, which `tf.io.decode_image` then refuses on its own.
    """
    long_enough = tf.strings.length(encoded) >= 26
    magic8 = tf.strings.substr(encoded, 0, 8)

    def png():
        return _unsigned(encoded, 16, 4, True) * _unsigned(encoded, 20, 4, True)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def gif():
        return _unsigned(encoded, 6, 2, False) * _unsigned(encoded, 8, 2, False)

    def bmp():
        width, height = _unsigned(encoded, 18, 4, False), _unsigned(encoded, 22, 4, False)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # top-down BMPs are negative
        return width * height

    return tf.case([(tf.logical_and(long_enough, tf.equal(magic8, b"\x89PNG\r\n\x1a\n")), png),
                    (tf.image.is_jpeg(encoded), jpeg),
                    (tf.logical_and(long_enough, tf.equal(tf.strings.substr(encoded, 0, 4), b"GIF8")), gif),
                    (tf.logical_and(long_enough, tf.equal(tf.strings.substr(encoded, 0, 2), b"BM")), bmp)],
                   default=lambda: tf.constant(0, tf.int64), exclusive=False)


def decode_image_bytes(encoded: tf.Tensor, max_pixels: int = MAX_IMAGE_PIXELS) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP of any size up to `max_pixels` into a 64x64x3 float32 image in [0, 1].

    The TensorFlow twin of ExampleGen's `sources.decode_image`: turned upright by its EXIF
    orientation, RGB, 16-bit channels to their high byte, resized with antialiasing."""
    pixels = header_pixels(encoded)
    checked = tf.debugging.assert_less_equal(
        pixels, tf.constant(max_pixels, tf.int64),
        message=f"the image declares more pixels than the limit of {max_pixels}; not decoded")
    with tf.control_dependencies([checked]):
        image = _upright(tf.io.decode_image(encoded, channels=3, expand_animations=False), exif_orientation(encoded))
    image = tf.image.resize(tf.cast(image, tf.float32), input_pipeline.IMAGE_SHAPE[:2], antialias=True)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def predictor(model: keras.Model, flip_average: bool = False):
    """images -> probabilities: `model`, or with `flip_average` the mean of its answers for each image
    and its mirror image (test-time augmentation: twice the computation)."""
    if not flip_average:
        return lambda images: model(images, training=False)
    return lambda images: (model(images, training=False) + model(images[:, :, ::-1], training=False)) / 2


def export_serving_model(model: keras.Model, path: str, max_pixels: int = MAX_IMAGE_PIXELS,
                         flip_average: bool = False) -> None:
    """Writes `model` to `path` as a TF SavedModel with both signatures.

    Args:
      model: the Keras model (64x64x3 float32 in [0, 1] -> probabilities).
      path: the SavedModel directory.
      max_pixels: `serve_image_bytes` refuses an image whose header declares more pixels.
      flip_average: both signatures answer with the mean of the model's probabilities for each
        image and its mirror image (`predictor`); same inputs and outputs.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    predict = predictor(model, flip_average)

    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {"image": input_pipeline.FEATURES["image"]})
        images = input_pipeline.decode_png_batch(parsed["image"])
        return {"probabilities": predict(images)}

    def serve_image_bytes(image_bytes):
        images = tf.map_fn(lambda encoded: decode_image_bytes(encoded, max_pixels), image_bytes,
                           fn_output_signature=tf.TensorSpec(input_pipeline.IMAGE_SHAPE, tf.float32))
        probabilities = predict(images)
        return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1)}

    archive.add_endpoint("serving_default", serve_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.add_endpoint(IMAGE_BYTES_SIGNATURE, serve_image_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.write_out(path, verbose=False)
