"""Helpers for the serving tests: requests, images, an exported model, waiting for a version."""

import base64
import io
import json
import struct
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
from PIL import Image

from pipeline.rest_server import app as serving_app


def call(url: str, method: str = "GET", body=None, raw: bytes = None):
    """(HTTP status, headers, JSON body) of one request."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())



def image_bytes(fmt: str, size=(100, 100), seed: int = 0) -> bytes:
    """An encoded image of random colours."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG signature and header declaring width x height pixels, with no pixels: never decoded."""
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def example(image_png: bytes) -> bytes:
    """A serialized tf.Example as serving_default takes it: `image`, a PNG of a 64x64 RGB image."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_png]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def wait_for(predicate, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def states(url: str, name: str = "signs"):
    status, _, body = call(f"{url}v1/models/{name}")
    return [(v["version"], v["state"]) for v in body["model_version_status"]] if status == 200 else []


def start_serving(serving_dir: str, **settings) -> serving_app.BackgroundServer:
    """A server over `serving_dir`, once version 1 serves."""
    server = serving_app.BackgroundServer(serving_app.make_app(serving_dir, serving_app.ServerSettings(**settings)))
    wait_for(lambda: ("1", "AVAILABLE") in states(server.url), "version 1 to load")
    return server


def predict_one(url: str, data: bytes, version: str = ""):
    path = f"v1/models/signs{'/versions/' + version if version else ''}:predict"
    status, headers, body = call(url + path, "POST", {"signature_name": "serve_image_bytes", "instances": [b64(data)]})
    return status, headers.get("X-Model-Version"), body
