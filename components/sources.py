"""Readers for the SIGNS sources: SIGNS-format h5 files and folders of class sub-folders.

Every problem with the input raises `SignsDataError` with one line that names the file (and the
record index for h5) and what is wrong, so the runner can stop with that line alone.
"""

import io
import os
from typing import Iterator, Sequence

import numpy as np

IMAGE_SIZE = 64  # SIGNS images are 64x64 RGB
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
H5_CHUNK = 256  # records read from an h5 file at a time, so memory does not grow with the file


class SignsDataError(ValueError):
    """The input data is missing or malformed; the message is one line naming the file."""


def h5_keys(path: str) -> tuple[str, str]:
    """Returns the (x, y) dataset names of a SIGNS h5 file, such as ('train_set_x', 'train_set_y')."""
    import h5py  # pylint: disable=import-outside-toplevel

    try:
        with h5py.File(path, "r") as f:
            names = sorted(f.keys())
    except OSError as e:
        raise SignsDataError(f"{path}: not a readable HDF5 file ({e})") from e
    xs = [k for k in names if k.endswith("_set_x")]
    if len(xs) != 1 or xs[0][:-1] + "y" not in names:
        raise SignsDataError(
            f"{path}: expected one '<split>_set_x' and '<split>_set_y' dataset pair, found keys {names}")
    return xs[0], xs[0][:-1] + "y"


def check_h5(path: str, classes: Sequence[int]) -> int:
    """Validates a SIGNS h5 file's shapes, dtypes and labels; returns its record count."""
    import h5py  # pylint: disable=import-outside-toplevel

    x_key, y_key = h5_keys(path)
    with h5py.File(path, "r") as f:
        x, y = f[x_key], f[y_key]
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
            raise SignsDataError(
                f"{path}: '{x_key}' must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise SignsDataError(f"{path}: '{y_key}' must be integer (N,), got {y.dtype} {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise SignsDataError(
                f"{path}: '{x_key}' has {x.shape[0]} images but '{y_key}' has {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise SignsDataError(f"{path}: '{x_key}' holds no images")
        labels = y[:]
    bad = np.flatnonzero(~np.isin(labels, list(classes)))
    if bad.size:
        raise SignsDataError(
            f"{path}[{bad[0]}]: label {labels[bad[0]]} is not one of the classes {list(classes)}"
            f" ({bad.size} such records)")
    return int(labels.shape[0])


def read_h5_chunk(path: str, start: int, stop: int) -> Iterator[tuple[np.ndarray, int, str]]:
    """Yields (image uint8 HxWx3, label, source id) for records [start, stop) of a SIGNS h5 file."""
    import h5py  # pylint: disable=import-outside-toplevel

    x_key, y_key = h5_keys(path)
    with h5py.File(path, "r") as f:
        x, y = f[x_key][start:stop], f[y_key][start:stop]
    name = os.path.basename(path)
    for i, (image, label) in enumerate(zip(x, y)):
        yield _to_signs_size(image), int(label), f"{name}[{start + i}]"


def list_image_folder(root: str, classes: Sequence[int]) -> list[tuple[str, int]]:
    """Lists (path, label) for every image under `root/<label>/`, for the labels in `classes`."""
    if not os.path.isdir(root):
        raise SignsDataError(f"{root}: not a directory")
    found = []
    for label in classes:
        folder = os.path.join(root, str(label))
        if not os.path.isdir(folder):
            raise SignsDataError(f"{folder}: missing class folder for label {label}")
        files = sorted(os.listdir(folder))
        images = [os.path.join(folder, n) for n in files if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not images:
            raise SignsDataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) for label {label}")
        found.extend((p, label) for p in images)
    return found


def read_image_file(path: str) -> np.ndarray:
    """Decodes any image file into SIGNS form: EXIF-upright, RGB, 64x64 uint8."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SignsDataError(f"{path}: unreadable ({e.strerror})") from e
    if not data:
        raise SignsDataError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SignsDataError(f"{path}: not a decodable image ({e})") from e
    return _to_signs_size(np.asarray(rgb))


def _to_signs_size(image: np.ndarray) -> np.ndarray:
    """Resizes an HxWx3 uint8 image to 64x64 with Pillow's antialiased bilinear filter."""
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
