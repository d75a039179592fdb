"""Times `python -m pipeline.serve` under 1, 8 and 32 concurrent clients against the model in-process.

    python bench/serve_load.py [--serving-dir DIR] [--concurrency 1,8,32] [--requests 256] [--seconds 30]

The server runs as its own process on 127.0.0.1, as a user starts it. Each client sends one photo
per request through TF Serving's REST API (`serve_image_bytes`, base64), waits for the answer and
sends the next; a level stops after `--requests` answers or `--seconds`, whichever comes first.
It prints requests per second and the p50 and p99 latency per level, with request batching on
(the server's default) and off (`--max-batch-size 1`), beside the limit on this machine: the same
SavedModel called in this process on batches of the same size, in images per second.

Without `--serving-dir` it exports the seed's ResNet50, untrained, as version 1 in a temporary
directory: serving speed does not depend on the weights.
"""

import argparse
import asyncio
import base64
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List
import io

from bench.machine import cpu_model
from components.push import version_dirs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(REPO, "..", "shared", "data", "sign-language-digits", "Dataset")


def a_photo() -> bytes:
    """One of the shared photos, else a synthetic hand as PNG (the same size class: a 64x64 image)."""
    photos = sorted(glob.glob(os.path.join(PHOTOS, "*", "*.JPG")) + glob.glob(os.path.join(PHOTOS, "*", "*.jpg")))
    if photos:
        with open(photos[0], "rb") as f:
            return f.read()
    from PIL import Image  # pylint: disable=import-outside-toplevel
    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    images, _ = synthetic.make_split(1, seed=0)
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, format="PNG")
    return buf.getvalue()


def export_untrained(directory: str) -> str:
    """The seed's ResNet50 exported as version 1 of a serving dir under `directory`."""
    from trainer import export  # pylint: disable=import-outside-toplevel
    from trainer.resnet import ResNet50  # pylint: disable=import-outside-toplevel
    serving_dir = os.path.join(directory, "serving_model")
    export.export_serving_model(ResNet50(input_shape=(64, 64, 3), classes=6), os.path.join(serving_dir, "1"))
    return serving_dir


def in_process(serving_dir: str, photo: bytes, batch_sizes: List[int], seconds: float) -> Dict[int, float]:
    """Images per second of the SavedModel's serve_image_bytes called here, per batch size."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer.export import IMAGE_BYTES_SIGNATURE  # pylint: disable=import-outside-toplevel

    model = tf.saved_model.load(version_dirs.version_dir(serving_dir, version_dirs.newest_version(serving_dir)))
    classify = model.signatures[IMAGE_BYTES_SIGNATURE]
    rates = {}
    for size in batch_sizes:
        batch = tf.constant([photo] * size)
        classify(image_bytes=batch)  # the first call traces
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < seconds / 4:
            classify(image_bytes=batch)["probabilities"].numpy()
            calls += 1
        rates[size] = calls * size / (time.perf_counter() - start)
    return rates


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m pipeline.serve` in a process of its own, ready once the model is AVAILABLE."""

    def __init__(self, serving_dir: str, *flags: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/models/signs"
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", "--serving-dir", serving_dir,
                                      "--port", str(self.port), *flags], cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(self._wait_ready(180))

    async def _wait_ready(self, timeout: float) -> None:
        import aiohttp  # pylint: disable=import-outside-toplevel
        deadline = time.time() + timeout
        async with aiohttp.ClientSession() as session:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with code {self.proc.returncode}")
                try:
                    async with session.get(self.url) as response:
                        status = await response.json()
                        if response.status == 200 and status["model_version_status"][0]["state"] == "AVAILABLE":
                            return
                except (aiohttp.ClientError, KeyError, IndexError, ValueError):
                    pass
                await asyncio.sleep(0.5)
        raise RuntimeError(f"the server did not serve a model within {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


async def _load(url: str, body: bytes, clients: int, requests: int, seconds: float) -> Dict[str, float]:
    """`clients` clients, each sending one request after another; latencies of the answers."""
    import aiohttp  # pylint: disable=import-outside-toplevel
    latencies: List[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def one(session) -> None:
        nonlocal failures
        start = time.perf_counter()
        async with session.post(url + ":predict", data=body) as response:
            await response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                failures += 1

    issued = 0

    async def client(session) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1  # taken before the request, so the clients together send `requests` exactly
            await one(session)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await one(session)  # a warm-up request, not counted
        latencies.clear()
        failures, issued = 0, 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    if not latencies:
        raise RuntimeError(f"no request succeeded ({failures} failed)")
    ordered = sorted(latencies)
    return {"requests": len(latencies), "failures": failures, "per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--serving-dir", default=None, help="a serving dir with a pushed model (default: an untrained export)")
    p.add_argument("--concurrency", default="1,8,32", help="concurrent clients per level, comma-separated")
    p.add_argument("--requests", type=int, default=256, help="answers per level at most")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores", flush=True)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        serving_dir = args.serving_dir
        if serving_dir is None:
            print("exporting the seed's ResNet50 (untrained) ...", flush=True)
            serving_dir = export_untrained(tmp)
        photo = a_photo()
        body = json.dumps({"signature_name": "serve_image_bytes",
                           "instances": [{"b64": base64.b64encode(photo).decode()}]}).encode()
        print(f"in-process: serve_image_bytes on batches of {levels} ...", flush=True)
        limit = in_process(serving_dir, photo, levels, args.seconds)
        results = {}
        for mode, flags in (("batched", ()), ("unbatched", ("--max-batch-size", "1"))):
            server = Server(serving_dir, *flags)
            try:
                for clients in levels:
                    print(f"server ({mode}): {clients} concurrent clients ...", flush=True)
                    results[(mode, clients)] = asyncio.run(_load(server.url, body, clients, args.requests, args.seconds))
            finally:
                server.stop()

    print(f"\nrequests/s and latency of `python -m pipeline.serve` on 127.0.0.1, one {len(photo)}-byte photo per "
          f"request; in-process: the same model called here on a batch of that many photos")
    print(f"{'clients':>7} {'batched/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'unbatched/s':>12} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'in-process img/s':>17} {'batched / in-process':>21}")
    for clients in levels:
        b, u = results[("batched", clients)], results[("unbatched", clients)]
        print(f"{clients:7d} {b['per_s']:10.1f} {b['p50_ms']:8.0f} {b['p99_ms']:8.0f} {u['per_s']:12.1f} "
              f"{u['p50_ms']:8.0f} {u['p99_ms']:8.0f} {limit[clients]:17.1f} {b['per_s'] / limit[clients]:20.2f}x")
    print(f"total wall time {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "cores": os.cpu_count(), "in_process": limit,
                       "server": {f"{m}/{c}": r for (m, c), r in results.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
