"""Readers for the SIGNS sources: SIGNS-format h5 files, folders of class sub-folders, TFRecords.

Every problem with the input raises `SignsDataError` with one line that names the file (and the
record index for h5) and what is wrong, so the runner can stop with that line alone.
"""

import io
import posixpath
import re
from typing import Iterator, Sequence

import numpy as np

from components.data import storage
from components.data.errors import SignsDataError

IMAGE_SIZE = 64  # SIGNS images are 64x64 RGB
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
H5_CHUNK = 256  # records read from an h5 file at a time, so memory does not grow with the file
H5_CHUNK_BYTES = 256 * 2 ** 20  # ... and fewer where 256 of its images would decode to more than this
H5_LABELS_AT_ONCE = 2 ** 20  # labels checked at a time
# Images declaring more pixels are refused before they are decoded (a 140 KB PNG can declare
# 12000 x 12000 pixels and take gigabytes to decode). 40 MP is above any phone camera's photo.
MAX_IMAGE_PIXELS = 40_000_000
# Files larger than these are refused before they are read: an image file (a 40 MP PNG is under
# 120 MB), and an h5 or TFRecord file (SIGNS h5 files are a few MB; a TFRecord shard of a large
# run about 1 GB). An h5 file's images are refused when they would decode to more than
# MAX_H5_DECODED_BYTES (a few KB of compressed h5 can declare terabytes).
MAX_IMAGE_FILE_BYTES = 256 * 2 ** 20
MAX_FILE_BYTES = 16 * 2 ** 30
MAX_H5_DECODED_BYTES = 64 * 2 ** 30
MAX_SOURCE_BYTES = 1024 * 2 ** 30  # all the files of one image folder or TFRecord source

# Source kinds ExampleGen reads (what `--data` points at).
H5_PAIR = "h5_pair"  # a directory with train_signs.h5 and test_signs.h5: the train and eval splits
H5_FILE = "h5_file"  # one SIGNS-format h5 file, split by image-content hash
IMAGE_FOLDER = "image_folder"  # <root>/<label>/*.jpg|png|..., split by image-content hash
TFRECORDS = "tfrecords"  # tf.Example TFRecords in our schema: Split-train/ + Split-eval/, or one folder
SOURCE_KINDS = (H5_PAIR, H5_FILE, IMAGE_FOLDER, TFRECORDS)


def check_file(path: str, limit: int = MAX_FILE_BYTES) -> int:
    """The size of a file a source names, after checking it is a regular file of at most `limit`
    bytes: a FIFO would block the reader for good, a link to /dev/zero never ends."""
    try:
        kind, size = storage.file_kind(path)
    except OSError as e:
        raise SignsDataError(f"{path}: unreadable ({e.strerror or e})") from e
    if kind != "file":
        raise SignsDataError(f"{path}: a {kind}, not a regular file; not read")
    if size > limit:
        raise SignsDataError(f"{path}: {size} bytes, more than the limit of {limit} for one file; not read")
    return size


def h5_keys(path: str) -> tuple[str, str]:
    """Returns the (x, y) dataset names of a SIGNS h5 file, such as ('train_set_x', 'train_set_y').

    Both must be datasets stored in the file itself: an external link, or a dataset whose bytes are
    kept in another file (external storage, a virtual dataset), would read files the source does
    not name (on Kubeflow, the pod's own: its service-account token among them).
    """
    import h5py  # pylint: disable=import-outside-toplevel

    check_file(path)
    try:
        with h5py.File(storage.local_copy(path), "r") as f:
            names = sorted(f.keys())
            xs = [k for k in names if k.endswith("_set_x")]
            if len(xs) != 1 or xs[0][:-1] + "y" not in names:
                raise SignsDataError(
                    f"{path}: expected one '<split>_set_x' and '<split>_set_y' dataset pair, found keys {names}")
            for key in (xs[0], xs[0][:-1] + "y"):
                link = f.get(key, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    raise SignsDataError(f"{path}: '{key}' is a {type(link).__name__} to another place; "
                                         f"only datasets stored in the file are read")
                item = f[key]
                if not isinstance(item, h5py.Dataset):
                    raise SignsDataError(f"{path}: '{key}' is a {type(item).__name__.lower()}, not a dataset")
                if item.external or item.is_virtual:
                    raise SignsDataError(f"{path}: '{key}' keeps its data in other files "
                                         f"({'external storage' if item.external else 'a virtual dataset'}); "
                                         f"only datasets stored in the file are read")
    except OSError as e:
        raise SignsDataError(f"{path}: not a readable HDF5 file ({e})") from e
    return xs[0], xs[0][:-1] + "y"


def check_h5(path: str, classes: Sequence[int], max_pixels: int = MAX_IMAGE_PIXELS) -> int:
    """Validates a SIGNS h5 file's shapes, dtypes, sizes and labels; returns its record count."""
    return check_h5_chunks(path, classes, max_pixels)[0]


def _unstored(path: str, key: str, dataset) -> str:
    """What a dataset declares but does not store ('' if it stores it all): unwritten chunks, or
    contiguous storage never allocated. h5py would read them as zeros, as many as declared."""
    if dataset.size == 0:
        return ""
    if dataset.chunks is None:
        stored = dataset.id.get_storage_size()
        if stored < dataset.nbytes:
            return (f"{path}: '{key}' declares {dataset.shape} ({dataset.nbytes} bytes) but stores {stored} bytes; "
                    f"not read")
        return ""
    total = int(np.prod([-(-n // c) for n, c in zip(dataset.shape, dataset.chunks)], dtype=np.float64))
    stored = dataset.id.get_num_chunks()
    if stored < total:
        return f"{path}: '{key}' declares {dataset.shape} but stores {stored} of its {total} chunks; not read"
    return ""


def check_h5_chunks(path: str, classes: Sequence[int], max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """`check_h5`, and how many records to read at a time (`H5_CHUNK`, fewer for large images), so
    that reading the file takes bounded memory whatever it declares."""
    import h5py  # pylint: disable=import-outside-toplevel

    x_key, y_key = h5_keys(path)
    with h5py.File(storage.local_copy(path), "r") as f:
        x, y = f[x_key], f[y_key]
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
            raise SignsDataError(
                f"{path}: '{x_key}' must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
        if x.shape[1] * x.shape[2] > max_pixels:
            raise SignsDataError(f"{path}: '{x_key}' holds {x.shape[2]}x{x.shape[1]} images, more pixels than "
                                 f"the limit of {max_pixels} (--max-image-pixels); not read")
        if x.size > MAX_H5_DECODED_BYTES:
            raise SignsDataError(f"{path}: '{x_key}' {x.shape} would decode to {x.size} bytes, more than the "
                                 f"limit of {MAX_H5_DECODED_BYTES}; not read")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise SignsDataError(f"{path}: '{y_key}' must be integer (N,), got {y.dtype} {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise SignsDataError(
                f"{path}: '{x_key}' has {x.shape[0]} images but '{y_key}' has {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise SignsDataError(f"{path}: '{x_key}' holds no images")
        for key, dataset in ((x_key, x), (y_key, y)):
            problem = _unstored(path, key, dataset)
            if problem:
                raise SignsDataError(problem)
        n, allowed = int(y.shape[0]), list(classes)
        for start in range(0, n, H5_LABELS_AT_ONCE):
            labels = y[start:start + H5_LABELS_AT_ONCE]
            bad = np.flatnonzero(~np.isin(labels, allowed))
            if bad.size:
                first = start + int(bad[0])
                raise SignsDataError(f"{path}[{first}]: label {labels[bad[0]]} is not one of the classes {allowed}"
                                     f" ({bad.size} such records in {first}..{start + len(labels) - 1})")
        per_record = x.shape[1] * x.shape[2] * 3
    return n, max(1, min(H5_CHUNK, H5_CHUNK_BYTES // per_record))


def read_h5_chunk(path: str, start: int, stop: int) -> Iterator[tuple[np.ndarray, int, str]]:
    """Yields (image uint8 HxWx3, label, source id) for records [start, stop) of a SIGNS h5 file."""
    import h5py  # pylint: disable=import-outside-toplevel

    x_key, y_key = h5_keys(path)
    with h5py.File(storage.local_copy(path), "r") as f:
        x, y = f[x_key][start:stop], f[y_key][start:stop]
    name = posixpath.basename(path)
    for i, (image, label) in enumerate(zip(x, y)):
        yield _to_signs_size(image), int(label), f"{name}[{start + i}]"


def check_source_size(location: str) -> int:
    """The bytes of every file under a source folder, after checking they are at most
    MAX_SOURCE_BYTES in all (a folder of a few million photos is far below it)."""
    total = sum(int(info.get("size") or 0) for info in storage.walk_files(location).values())
    if total > MAX_SOURCE_BYTES:
        raise SignsDataError(f"{location}: {total} bytes of files, more than the limit of {MAX_SOURCE_BYTES} "
                             f"for one source; not read")
    return total


def list_image_folder(root: str, classes: Sequence[int]) -> list[tuple[str, int]]:
    """Lists (path, label) for every image under `root/<label>/`, for the labels in `classes`."""
    if not storage.isdir(root):
        raise SignsDataError(f"{root}: not a directory")
    check_source_size(root)
    found = []
    for label in classes:
        folder = storage.join(root, str(label))
        if not storage.isdir(folder):
            raise SignsDataError(f"{folder}: missing class folder for label {label}")
        files = storage.listdir(folder)
        images = [storage.join(folder, n) for n in files if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not images:
            raise SignsDataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) for label {label}")
        found.extend((p, label) for p in images)
    return found


def read_image_file(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes any image file into SIGNS form: EXIF-upright, RGB, 64x64 uint8."""
    check_file(path, MAX_IMAGE_FILE_BYTES)
    try:
        data = storage.read_bytes(path, limit=MAX_IMAGE_FILE_BYTES)
    except (OSError, storage.StorageError) as e:
        raise SignsDataError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from e
    if not data:
        raise SignsDataError(f"{path}: empty file (0 bytes)")
    if len(data) > MAX_IMAGE_FILE_BYTES:  # it grew while we looked
        raise SignsDataError(f"{path}: more than the limit of {MAX_IMAGE_FILE_BYTES} bytes for one file; not read")
    return decode_image(data, path, max_pixels)


# EXIF orientation -> the Pillow transpose that turns the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}


def _unsigned(data: bytes, offset: int, size: int, big_endian: bool = True) -> int:
    """As `trainer.export._unsigned`: bytes past the end read as 0, an offset past it as the end."""
    offset = min(max(offset, 0), len(data))
    raw = data[offset:offset + size].ljust(size, b"\0")
    return int.from_bytes(raw, "big" if big_endian else "little")


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) by the serving graph's rule (`trainer.export.exif_orientation`),
    step for step: an APP1 Exif segment within a JPEG's first 64 segments, an eXIf chunk before a
    PNG's image data, tag 0x0112 of the first IFD as SHORT or LONG; 1 otherwise. Pillow also reads
    XMP, text chunks and chunks after the image data, which the served model cannot: training
    follows the server, so a photo is turned alike in both or in neither."""
    length, tiff, pos = len(data), -1, 0
    if data[:3] == b"\xff\xd8\xff":
        pos = 2
        for _ in range(64):
            if tiff >= 0 or pos + 8 > length:
                break
            marker, size = _unsigned(data, pos, 2), _unsigned(data, pos + 2, 2)
            if marker == 0xFFE1 and data[pos + 4:pos + 10] == b"Exif\0\0":
                tiff = pos + 10
            pos = length if marker == 0xFFDA or marker >> 8 != 0xFF else pos + 2 + size
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        for _ in range(64):
            if tiff >= 0 or pos + 8 > length:
                break
            size, kind = _unsigned(data, pos, 4), data[pos + 4:pos + 8]
            if kind == b"eXIf":
                tiff = pos + 8
            pos = length if kind in (b"IDAT", b"IEND") else pos + 12 + size
    if tiff < 0:
        return 1
    big = data[tiff:tiff + 2] == b"MM"
    ifd = tiff + _unsigned(data, tiff + 4, 4, big)
    value = -1
    for j in range(min(_unsigned(data, ifd, 2, big), 256)):
        at = ifd + 2 + 12 * j
        if _unsigned(data, at, 2, big) == 0x0112:
            value = _unsigned(data, at + 8, 4 if _unsigned(data, at + 2, 2, big) == 4 else 2, big)
    return value if 1 <= value <= 8 else 1


def decode_image(data: bytes, where: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes encoded image bytes (JPEG, PNG, ...) into SIGNS form; `where` names them in errors.

    The image is turned upright by its EXIF orientation, converted to RGB (grayscale, RGBA and
    palette images included; alpha is dropped; 16-bit channels keep their high byte), then resized
    to 64x64 (see `_to_signs_size`). Serving decodes alike: `trainer.export.decode_image_bytes`.
    """
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    if not data:
        raise SignsDataError(f"{where}: empty image (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            if img.width * img.height > max_pixels:
                raise SignsDataError(f"{where}: declares {img.width}x{img.height} pixels, more than the limit of "
                                     f"{max_pixels} (--max-image-pixels); not decoded")
            turn = _TRANSPOSE.get(exif_orientation(data))
            img.load()
            if turn is not None:
                img = img.transpose(getattr(Image.Transpose, turn))
            if img.mode.startswith("I"):  # 16-bit grayscale ("I;16", or "I"): convert("RGB") would clip at 255
                gray = (np.asarray(img).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
                return _to_signs_size(np.repeat(gray[..., None], 3, axis=2))  # the high byte, as libpng reads it
            rgb = img.convert("RGB")
    except SignsDataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise SignsDataError(f"{where}: not a decodable image ({e})") from e
    return _to_signs_size(np.asarray(rgb))


def list_tfrecord_files(pattern: str) -> list[str]:
    """Lists the TFRecord files matching a glob pattern, sorted; errors if there are none."""
    files = [p for p in storage.glob(pattern) if storage.isfile(p)]
    if not files:
        raise SignsDataError(f"{pattern}: no TFRecord files")
    total = sum(check_file(p) for p in files)
    if total > MAX_SOURCE_BYTES:
        raise SignsDataError(f"{pattern}: {total} bytes of TFRecord files, more than the limit of "
                             f"{MAX_SOURCE_BYTES} for one source; not read")
    return files


def count_tfrecords(path: str) -> int:
    """The records of a TFRecord file (gzip if its name ends in '.gz'), up to the first that does
    not read (`read_tfrecord_file` names it)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    check_file(path)
    compression = "GZIP" if path.endswith(".gz") else ""
    records = iter(tf.data.TFRecordDataset(storage.local_copy(path), compression_type=compression))
    count = 0
    while True:
        try:
            next(records)
        except (StopIteration, tf.errors.OpError):
            return count
        count += 1


def read_tfrecord_file(path: str) -> Iterator[tuple[bytes, str, str]]:
    """Yields (serialized record, where, default source id) for each record of a TFRecord file.

    The file is gzip-compressed if its name ends in '.gz'. `where` ('path[index]') names the
    record in errors; the default source id ('file[index]') is used when a record has none.
    Streams the file; a corrupt file raises `SignsDataError` naming the record it stopped at.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    check_file(path)
    name = posixpath.basename(path)
    compression = "GZIP" if path.endswith(".gz") else ""
    records = tf.data.TFRecordDataset(storage.local_copy(path), compression_type=compression).as_numpy_iterator()
    index = 0
    while True:
        try:
            raw = next(records)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*", "", e.message.splitlines()[0])
            raise SignsDataError(f"{path}[{index}]: unreadable TFRecord ({reason})") from e
        yield raw, f"{path}[{index}]", f"{name}[{index}]"
        index += 1


def tf_example(raw: bytes, where: str):
    """Parses a serialized tf.Example; `where` names the record in the error if it is not one."""
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        return tf.train.Example.FromString(raw)
    except DecodeError as e:
        raise SignsDataError(f"{where}: not a tf.Example ({e})") from e


def parse_signs_example(raw: bytes, classes: Sequence[int], where: str, default_source: str,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, int, str]:
    """Reads one serialized tf.Example of our schema into (image, label, source id)."""
    feature = tf_example(raw, where).features.feature
    images = feature["image"].bytes_list.value if "image" in feature else []
    labels = feature["label"].int64_list.value if "label" in feature else []
    if len(images) != 1 or len(labels) != 1:
        raise SignsDataError(f"{where}: expected one bytes 'image' and one int64 'label', got "
                             f"{len(images)} image and {len(labels)} label values "
                             f"(features: {sorted(feature)})")
    if labels[0] not in classes:
        raise SignsDataError(f"{where}: label {labels[0]} is not one of the classes {list(classes)}")
    sources = feature["source"].bytes_list.value if "source" in feature else []
    source = sources[0].decode("utf-8", "replace") if sources else default_source
    return decode_image(images[0], where, max_pixels), int(labels[0]), source


def _to_signs_size(image: np.ndarray) -> np.ndarray:
    """Resizes an HxWx3 uint8 image to 64x64 with Pillow's antialiased bilinear filter.

    Pillow's BILINEAR `resize` widens its kernel by the scale factor when it shrinks, so it
    averages every source pixel (no aliasing from a 100x100 photo); the aspect ratio is not kept,
    as SIGNS photos are square.
    """
    if image.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        return image
    from PIL import Image  # pylint: disable=import-outside-toplevel

    resized = Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def encode_png(image: np.ndarray) -> bytes:
    """Encodes a uint8 HxWx3 image as PNG (lossless)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
