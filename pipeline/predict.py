"""Classifies hand-sign images with the pushed model, through its raw-bytes signature.

    python -m pipeline.predict hand1.jpg hand2.png            # newest pushed version
    python -m pipeline.predict --version 3 --json hand1.jpg
"""

import argparse
import json
import sys

from pipeline import configs
from components.data import startup


def _declared_size(data: bytes):
    """(width, height) from an image's header, without decoding it; None if PIL cannot read one."""
    import io  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # pylint: disable=broad-except  (the signature then says what is wrong)
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files, any size")
    p.add_argument("--version", type=int, default=None, help="the pushed version to use (default: newest)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    configs.add_flags(p, only=("pipeline_root", "serving_dir", "max_image_pixels"))  # as the local runner's
    args = p.parse_args(argv)
    startup.start_process()
    config = configs.config_from_args(args)
    from components.push import serving  # pylint: disable=import-outside-toplevel

    versions = serving.list_versions(config.push_dir)
    if not versions:
        print(f"error: {config.push_dir}: no pushed model; run the pipeline until a model is blessed")
        return 1
    version = args.version if args.version is not None else versions[-1]
    if version not in versions:
        print(f"error: {config.push_dir}: no version {version}; pushed versions are {versions}")
        return 1
    images = []
    for path in args.images:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            print(f"error: {path}: {e.strerror}")
            return 1
        # JPEG, PNG (the signature also decodes GIF and BMP).
        if not data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")):
            print(f"error: {path}: not a JPEG or PNG image")
            return 1
        size = _declared_size(data)
        if size and size[0] * size[1] > args.max_image_pixels:
            print(f"error: {path}: declares {size[0]}x{size[1]} pixels, more than the limit of "
                  f"{args.max_image_pixels} (--max-image-pixels); not decoded")
            return 1
        images.append(data)

    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer.export import IMAGE_BYTES_SIGNATURE  # pylint: disable=import-outside-toplevel

    model_dir = serving.version_dir(config.push_dir, version)
    classify = tf.saved_model.load(model_dir).signatures[IMAGE_BYTES_SIGNATURE]
    for path, data in zip(args.images, images):
        try:
            out = classify(image_bytes=tf.constant([data]))
        except tf.errors.InvalidArgumentError as e:
            print(f"error: {path}: the image does not decode ({e.message.splitlines()[0]})")
            return 1
        probabilities = [round(float(p), 4) for p in out["probabilities"].numpy()[0]]
        predicted = int(out["classes"].numpy()[0])
        if args.json:
            print(json.dumps({"image": path, "class": predicted, "probabilities": probabilities,
                              "model_version": version}))
        else:
            shown = "  ".join(f"{k}:{p:.2f}" for k, p in enumerate(probabilities))
            print(f"{path}: class {predicted} ({probabilities[predicted]:.0%})   [{shown}]   model v{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
