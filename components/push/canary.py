"""Nothing ships that cannot be served: a candidate is loaded as a server loads it, in a process of
its own with a time limit, and must answer a canary request through each signature.

TFX's InfraValidator does this with a TF Serving container; here the server is TensorFlow's own
loader (`tf.saved_model.load`, tags `serve`, what `pipeline.serve` and TF Serving's SavedModel
bundle load), in a child process, so a model that crashes, hangs or exhausts memory while loading
takes the child down, not the Pusher. The canary request is `canary.json`, which the Trainer writes
beside the model: a few PNG images and the probabilities the trained Keras model gave them. Both
signatures must answer them with those probabilities (`serving_default` through tf.Examples,
`serve_image_bytes` through the raw PNG bytes), as probability rows, with `classes` their argmax.

    python -m components.push.canary MODEL_DIR [CANARY_JSON]      # exit 0: it serves
"""

import base64
import binascii
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Optional

import numpy as np

from components.data import sources, storage
from components.data import startup
from components.push import version_dirs

CANARY_FILE = "canary.json"  # beside the model's Format-Serving directory, written by the Trainer
TIMEOUT_S = 600.0  # to load the ResNet and answer: about 15 s on 2 cores
SIGNATURES = ("serving_default", "serve_image_bytes")


def canary_images(count: int = 4, size: int = 64) -> np.ndarray:
    """The canary request's images: deterministic, varied (noise, a gradient, flat colours)."""
    rng = np.random.default_rng(20151210)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size]
    images[1] = np.stack([x * 4, y * 4, (x + y) * 2], -1).clip(0, 255)
    images[2] = (40, 160, 90)
    return images


def write_expected(model_dir: str, predict: Callable[[np.ndarray], np.ndarray], atol: float = 1e-3) -> str:
    """Writes `canary.json` into `model_dir`: the canary images as PNG and `predict`'s probabilities
    for them (`predict`: float32 NHWC images in [0, 1] -> probabilities, the model in memory)."""
    from components.data.sources import encode_png  # pylint: disable=import-outside-toplevel
    images = canary_images()
    probabilities = np.asarray(predict(images.astype(np.float32) / 255.0), np.float64)
    path = storage.join(model_dir, CANARY_FILE)
    storage.write_bytes(path, json.dumps({"png_b64": [base64.b64encode(encode_png(i)).decode() for i in images],
                                          "probabilities": probabilities.round(6).tolist(), "atol": atol}).encode())
    return path


class CanaryError(Exception):
    """The canary request itself cannot be used (missing, not a file, not the Trainer's JSON): one
    line naming it. The model was not tried, so nothing is said about it."""


MAX_CANARY_BYTES = 4 * 2 ** 20  # the Trainer's is about 60 KB


def read_canary(path: str) -> dict:
    """The canary request at `path` (a path or an object-store URL), checked; raises CanaryError."""
    try:
        if not storage.exists(path):
            raise FileNotFoundError(path)
        if not storage.is_remote(path):
            sources.check_file(path, MAX_CANARY_BYTES)  # a FIFO would block the read for good
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise CanaryError(f"{path}: missing (the Trainer writes it beside every model it exports)") from None
    except sources.SignsDataError as e:
        raise CanaryError(str(e)) from None
    except (OSError, storage.StorageError) as e:
        raise CanaryError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    if len(data) > MAX_CANARY_BYTES:
        raise CanaryError(f"{path}: {len(data)} bytes, more than the limit of {MAX_CANARY_BYTES}; not read")
    try:
        canary = json.loads(data)
        pngs = [base64.b64decode(p, validate=True) for p in canary["png_b64"]]
        expected = np.asarray(canary["probabilities"], np.float64)
        atol = float(canary["atol"])
        if not pngs or expected.ndim != 2 or expected.shape[0] != len(pngs) or not np.all(np.isfinite(expected)) \
                or not 0 < atol < 1:
            raise ValueError("its images, probabilities and tolerance do not match")
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise CanaryError(f"{path}: not a canary request as the Trainer writes it ({why})") from None
    return {"png_b64": canary["png_b64"], "probabilities": expected.tolist(), "atol": atol}


def check(model_dir: str, canary_path: Optional[str] = None, timeout_s: float = TIMEOUT_S) -> Optional[str]:
    """Why the SavedModel in `model_dir` does not serve, in one line; None when it does.

    Reads the files first (`version_dirs.model_problem`: a FIFO would hang the loader), and the canary
    request (`read_canary`, which raises CanaryError), then loads and calls the model in a child
    process for at most `timeout_s`. Without `canary_path` the answers are checked for shape only.
    """
    problem = version_dirs.model_problem(model_dir)
    if problem:
        return problem
    canary = read_canary(canary_path) if canary_path else None
    with tempfile.TemporaryDirectory(prefix="canary-") as tmp:
        command = [sys.executable, "-m", "components.push.canary", model_dir]
        if canary is not None:
            command.append(os.path.join(tmp, CANARY_FILE))
            with open(command[-1], "w") as f:
                json.dump(canary, f)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"it did not load and answer the canary request within {timeout_s:g} s"
    if done.returncode == 0:
        return None
    said = [line for line in done.stdout.splitlines() if line.startswith("canary: ")]
    if said:
        return said[-1][len("canary: "):]
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return f"loading it failed ({last[:200]})"


def _examples(pngs):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return [tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))})).SerializeToString() for png in pngs]


def _answer(model_dir: str, canary_path: Optional[str]) -> Optional[str]:
    """In the child: loads the model and checks each signature's answer; why it fails, or None."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    model = tf.saved_model.load(model_dir, tags=["serve"])
    if canary_path:
        with open(canary_path) as f:
            canary = json.load(f)
        pngs = [base64.b64decode(p) for p in canary["png_b64"]]
        expected, atol = np.asarray(canary["probabilities"]), float(canary["atol"])
    else:
        from components.data.sources import encode_png  # pylint: disable=import-outside-toplevel
        pngs, expected, atol = [encode_png(i) for i in canary_images()], None, 0.0
    missing = [name for name in SIGNATURES if name not in model.signatures]
    if missing:
        return f"it has no {' or '.join(missing)} signature (it has {sorted(model.signatures)})"
    for name in SIGNATURES:
        inputs = {"examples": tf.constant(_examples(pngs))} if name == "serving_default" \
            else {"image_bytes": tf.constant(pngs)}
        try:
            outputs = model.signatures[name](**inputs)
        except Exception as e:  # pylint: disable=broad-except  (the model's own failure, in one line)
            return f"{name} failed on the canary request ({str(e).strip().splitlines()[0][:200]})"
        probabilities = outputs["probabilities"].numpy().astype(np.float64)
        if probabilities.shape[0] != len(pngs) or not np.all(np.isfinite(probabilities)) \
                or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
            return f"{name} answered the canary request with no probabilities (shape {probabilities.shape})"
        if expected is not None:
            off = float(np.abs(probabilities - expected).max()) if probabilities.shape == expected.shape else np.inf
            if off > atol:
                return (f"{name} answers the canary request unlike the trained model (probabilities differ by "
                        f"up to {off:.3g}, more than {atol:g})")
        if "classes" in outputs and outputs["classes"].numpy().tolist() != probabilities.argmax(axis=1).tolist():
            return f"{name}'s classes are not its probabilities' argmax"
    return None


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    startup.start_process()
    problem = _answer(args[0], args[1] if len(args) > 1 else None)
    if problem:
        print(f"canary: {problem}", flush=True)
        return 1
    print("canary: served", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
