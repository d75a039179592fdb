"""Measures the on-disk encodings of a 64x64 RGB image: bytes a record against decode cost.

    python bench/encoding.py [--photos ../shared/data/sign-language-digits/Dataset] [--n 1000]

For PNG, JPEG (quality 95) and raw uint8 (with the shape known to the reader), it writes the
images as gzip TFRecords of tf.Example, as ExampleGen does, and prints bytes a record on disk and
the microseconds a batch decode takes per image in TensorFlow, as the Trainer decodes them.
Uses the real photos if present (resized to 64x64), else the synthetic set.
"""

import argparse
import io
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from components.data import sources, synthetic

SHAPE = (64, 64, 3)


def load_images(photos: str, n: int) -> tuple[np.ndarray, str]:
    if os.path.isdir(photos):
        paths = [p for p, _ in sources.list_image_folder(photos, range(6))][:n]
        return np.stack([sources.read_image_file(p) for p in paths]), f"{len(paths)} real photos"
    images, _ = synthetic.make_split(n, seed=0)
    return images, f"{n} synthetic images"


def encode(image: np.ndarray, kind: str) -> bytes:
    if kind == "raw":
        return image.tobytes()
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=kind, **({"quality": 95} if kind == "JPEG" else {}))
    return buf.getvalue()


def decoder(kind: str):
    if kind == "raw":
        return tf.function(lambda b: tf.reshape(tf.io.decode_raw(b, tf.uint8), (-1, *SHAPE)))
    decode = tf.io.decode_png if kind == "PNG" else tf.io.decode_jpeg
    return tf.function(lambda b: tf.map_fn(lambda x: tf.ensure_shape(decode(x, channels=3), SHAPE), b,
                                           fn_output_signature=tf.TensorSpec(SHAPE, tf.uint8)))


def measure(images: np.ndarray, kind: str, batch: int = 32, repeats: int = 3) -> dict:
    encoded = [encode(im, kind) for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.gz")
        with tf.io.TFRecordWriter(path, "GZIP") as w:
            for e in encoded:
                feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[e]))}
                w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        on_disk = os.path.getsize(path) / len(encoded)
    batches = [tf.constant(encoded[i:i + batch]) for i in range(0, len(encoded), batch)]
    fn = decoder(kind)
    decoded = np.concatenate([fn(b).numpy() for b in batches])  # warm-up, and the error check
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            fn(b)
        best = min(best, time.perf_counter() - start)
    error = float(np.abs(decoded.astype(int) - images.astype(int)).mean())
    return {"bytes": np.mean([len(e) for e in encoded]), "on_disk": on_disk,
            "decode_us": best / len(encoded) * 1e6, "error": error}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                    "data", "sign-language-digits", "Dataset"))
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args(argv)
    images, what = load_images(args.photos, args.n)
    print(f"{what}, 64x64 RGB, gzip TFRecords of tf.Example; decode in batches of 32, best of 3")
    print(f"{'encoding':<10}{'bytes/image':>12}{'on disk/record':>16}{'decode us/image':>17}{'mean abs err':>14}")
    for kind in ("PNG", "JPEG", "raw"):
        r = measure(images, kind)
        print(f"{kind:<10}{r['bytes']:>12.0f}{r['on_disk']:>16.0f}{r['decode_us']:>17.1f}{r['error']:>14.2f}")


if __name__ == "__main__":
    main()
