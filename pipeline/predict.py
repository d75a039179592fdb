"""Classifies hand-sign images with the pushed model, through its raw-bytes signature.

    python -m pipeline.predict hand1.jpg hand2.png            # newest pushed version
    python -m pipeline.predict --version 3 --json hand1.jpg
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import List, Optional, Tuple
import io

from common import flags
from common.flags import setting
from components.data import startup, storage
from common.redact import printable
from pipeline import options
from components.push import version_dirs


def _declared_size(data: bytes):
    """(width, height) from an image's header, without decoding it; None if PIL cannot read one."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # pylint: disable=broad-except  (the signature then says what is wrong)
        return None


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """What predict needs besides the pipeline's paths; its flags are made from these fields."""

    images: Tuple[str, ...] = setting((), "JPEG or PNG files, any size", flag="images", nargs="+", metavar="IMAGE")
    version: Optional[int] = setting(None, "the pushed version to use (default: newest)", parse=int)
    json: bool = setting(False, "print one JSON object per image", action="store_true")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_flags(p, PredictConfig)
    options.add_flags(p, only=("pipeline_root", "serving_dir", "max_image_pixels"))  # as the local runner's
    args = p.parse_args(argv)
    startup.start_process()
    asked, config = PredictConfig(**flags.values(PredictConfig, args)), options.config_from_args(args)
    with tempfile.TemporaryDirectory(prefix="signs-predict-") as tmp:
        try:
            version, model_dir = _pick_version(config.serving_dir, asked.version, tmp)
        except (PredictError, storage.StorageError) as e:
            print(f"error: {e}")
            return 1
        try:
            images = [_read_image(path, config.train.max_image_pixels) for path in asked.images]
        except BadImage as e:
            print(printable(f"error: {e}"))
            return 2
        return _classify(model_dir, version, list(asked.images), images, asked.json)


class BadImage(Exception):
    """An image argument that cannot be classified; the message is one line naming it."""


def _read_image(path: str, max_pixels: int) -> bytes:
    from components.data import sources  # pylint: disable=import-outside-toplevel  (numpy: after --help)
    try:
        # A regular file within the limit: /dev/zero would be read forever, a FIFO would block.
        size = sources.check_file(path, sources.MAX_IMAGE_FILE_BYTES)
        with open(path, "rb") as f:
            data = f.read(size + 1)
    except sources.SignsDataError as e:
        raise BadImage(str(e)) from None
    except OSError as e:
        raise BadImage(f"{path}: {e.strerror}") from None
    if len(data) > size:
        raise BadImage(f"{path}: grew while it was read; not read")
    # JPEG, PNG (the signature also decodes GIF and BMP).
    if not data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")):
        raise BadImage(f"{path}: not a JPEG or PNG image")
    size = _declared_size(data)
    if size and size[0] * size[1] > max_pixels:
        raise BadImage(f"{path}: declares {size[0]}x{size[1]} pixels, more than the limit of "
                       f"{max_pixels} (--max-image-pixels); not decoded")
    return data


class PredictError(Exception):
    """No version to classify with; the message is one line."""


def _pick_version(serving_dir: str, wanted: Optional[int], tmp: str) -> Tuple[int, str]:
    """The version to use (`wanted`, or the newest that can be served) and its local directory
    (a copy in `tmp` for an object store). Versions that cannot be served are named, one line each."""

    versions = version_dirs.list_versions(serving_dir)
    if not versions:
        raise PredictError(f"{serving_dir}: no pushed model; run the pipeline until a model is blessed")
    if wanted is not None and wanted not in versions:
        raise PredictError(f"{serving_dir}: no version {wanted}; pushed versions are {versions}")
    for version in [wanted] if wanted is not None else reversed(versions):
        location = version_dirs.version_dir(serving_dir, version)
        local = location
        if storage.is_remote(location):
            local = os.path.join(tmp, str(version))
            storage.download_tree(location, local)
        problem = version_dirs.model_problem(local)
        if problem is None:
            return version, local
        if wanted is not None:
            raise PredictError(f"version {version} ({location}) cannot be served: {problem}")
        print(f"warning: version {version} ({location}) cannot be served: {problem}; passed over", file=sys.stderr)
    raise PredictError(f"{serving_dir}: no pushed version can be served (versions {versions})")


def _classify(model_dir: str, version: int, paths: List[str], images: List[bytes], as_json: bool) -> int:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer.export import IMAGE_BYTES_SIGNATURE  # pylint: disable=import-outside-toplevel

    try:
        classify = tf.saved_model.load(model_dir).signatures[IMAGE_BYTES_SIGNATURE]
    except Exception as e:  # pylint: disable=broad-except  (an op this TensorFlow lacks, ...: one line)
        print(f"error: version {version} ({model_dir}) does not load: {str(e).strip().splitlines()[0][:200]}")
        return 1
    for path, data in zip(paths, images):
        try:
            out = classify(image_bytes=tf.constant([data]))
        except tf.errors.InvalidArgumentError as e:
            print(printable(f"error: {path}: the image does not decode ({e.message.splitlines()[0]})"))
            return 2
        probabilities = [round(float(p), 4) for p in out["probabilities"].numpy()[0]]
        predicted = int(out["classes"].numpy()[0])
        if as_json:
            print(json.dumps({"image": path, "class": predicted, "probabilities": probabilities,
                              "model_version": version}))
        else:
            shown = "  ".join(f"{k}:{p:.2f}" for k, p in enumerate(probabilities))
            print(printable(f"{path}: class {predicted} ({probabilities[predicted]:.0%})   [{shown}]   "
                            f"model v{version}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
