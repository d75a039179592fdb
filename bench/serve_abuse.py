"""Latency of well-behaved clients of `python -m pipeline.serve`, alone and beside one abusive client.

    python bench/serve_abuse.py [--serving-dir DIR] [--clients 4] [--seconds 20]

Three runs of `--seconds` each, on 127.0.0.1, each against a server process of its own:

1. alone: `--clients` clients, each sending one photo per request (`serve_image_bytes`) and the
   next when answered;
2. beside an abusive client, with the server's limits (its defaults): the same clients, while one
   more client, in a process of its own, sends over and over a request of 8000 tiny PNGs, one of
   32 PNGs of 36 megapixels each and, three at a time, 59 KB gzip bodies that inflate to 60 MiB of
   JSON (`--bomb-mib`); holds 300 connections that send half a request's headers and stop from 127.0.0.2; and
   from eight addresses (127.0.0.2-9) holds 40 connections each that send a request's headers and
   the first byte of its body, then nothing (reopening each as soon as the server drops it);
3. the same, with the limits lifted (as far as the flags go): what the limits are for.

It prints p50 and p99 of the well-behaved clients' answers in each run, the ratio of each p99 to
the first run's, and how the abusive requests were answered, with the CPU it ran on. Without
`--serving-dir` it exports the seed's ResNet50, untrained (bench/serve_load.py).
"""

import argparse
import asyncio
import base64
import collections
import gzip
import io
import json
import os
import statistics
import tempfile
import time
from typing import Dict, List
import multiprocessing

from bench.machine import cpu_model
from bench.serve_load import Server, a_photo, export_untrained

NO_LIMITS = ("--max-request-rows", "65536", "--max-request-pixels", str(10 ** 10), "--max-connections", "65535",
             "--max-client-connections", "65535", "--header-timeout", "3600", "--body-timeout", "3600",
             "--min-data-rate", "0")  # each flag's far end (their ranges keep a limit a limit)
ABUSER_ADDRESS = "127.0.0.2"  # the abusive client's own address (Linux answers all of 127.0.0.0/8 on loopback)
HALF_BODY_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 10)]


def _png(size) -> bytes:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(buf, format="PNG")
    return buf.getvalue()


def _body(images: List[bytes]) -> bytes:
    return json.dumps({"signature_name": "serve_image_bytes",
                       "instances": [{"b64": base64.b64encode(i).decode()} for i in images]}).encode()


async def _abuse(url: str, seconds: float, retry_after: float, answered: collections.Counter,
                 bomb_mib: int = 60) -> None:
    """The abusive client: oversized requests back to back, and 300 half-sent requests held open
    (each reopened as soon as the server drops it, or `retry_after` s after a 503)."""
    import aiohttp  # pylint: disable=import-outside-toplevel
    stop = time.perf_counter() + seconds
    many_rows = _body([_png((4, 4))] * 8000)
    many_pixels = _body([_png((6000, 6000))] * 32)
    bomb = gzip.compress(b'{"instances": [' + b"0," * (bomb_mib << 19) + b"0]}")  # bomb_mib MiB of JSON
    host, port = url.split("//")[1].split("/")[0].split(":")

    async def inflating(session):
        while time.perf_counter() < stop:
            try:
                async with session.post(url + ":predict", data=bomb, headers={"Content-Encoding": "gzip"},
                                        timeout=aiohttp.ClientTimeout(total=seconds * 4)) as response:
                    await response.read()
                    answered[f"gzip {len(bomb) // 1024} KB -> {bomb_mib} MiB: {response.status}"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                answered[f"gzip: {type(e).__name__}"] += 1

    async def half_sent(address, request: bytes, label: str, dropped: str):
        """Sends `request` and no more, again and again: each reopened when dropped, `retry_after` s
        after a 503, until the run ends."""
        while time.perf_counter() < stop:
            try:
                reader, writer = await asyncio.open_connection(host, int(port), local_addr=(address, 0))
                writer.write(request)
                await writer.drain()
                data = await asyncio.wait_for(reader.read(1024), max(0.01, stop - time.perf_counter()))
                refused = data.startswith(b"HTTP/1.1 503")
                answered[f"{label}: " + ("503" if refused else dropped)] += 1
                writer.close()
                if refused:
                    await asyncio.sleep(retry_after)
            except (asyncio.TimeoutError, OSError):
                answered[f"{label}: held to the end"] += 1
                return

    async def oversized(session):
        while time.perf_counter() < stop:
            for name, body in (("8000 rows", many_rows), ("32 x 36 MP", many_pixels)):
                try:
                    async with session.post(url + ":predict", data=body,
                                            timeout=aiohttp.ClientTimeout(total=seconds * 4)) as response:
                        await response.read()
                        answered[f"{name}: {response.status}"] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    answered[f"{name}: {type(e).__name__}"] += 1

    connector = aiohttp.TCPConnector(limit=0, local_addr=(ABUSER_ADDRESS, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        half_headers = b"POST /v1/models/signs:predict HTTP/1.1\r\nHost: x\r\n"
        half_body = half_headers + b"Content-Length: 100000\r\n\r\n{"
        await asyncio.gather(oversized(session), *(inflating(session) for _ in range(3)),
                             *(half_sent(ABUSER_ADDRESS, half_headers, "half-sent", "closed") for _ in range(300)),
                             *(half_sent(a, half_body, "half-sent body", "dropped")
                               for a in HALF_BODY_ADDRESSES for _ in range(40)))


def _abuser_process(url: str, seconds: float, retry_after: float, results, bomb_mib: int = 60) -> None:
    answered: collections.Counter = collections.Counter()
    asyncio.run(_abuse(url, seconds, retry_after, answered, bomb_mib))
    results.put(dict(answered))


async def _well_behaved(url: str, photo_body: bytes, clients: int, seconds: float, fresh: bool = False) -> Dict:
    """`clients` clients, each sending one photo and the next when answered; their answers' latency.
    `fresh`: each request on a connection of its own (as curl), so it needs a free slot each time."""
    import aiohttp  # pylint: disable=import-outside-toplevel
    latencies: List[float] = []
    answered: collections.Counter = collections.Counter()
    stop = time.perf_counter() + seconds

    async def client(session):
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                async with session.post(url + ":predict", data=photo_body,
                                        timeout=aiohttp.ClientTimeout(total=2 * seconds)) as response:
                    await response.read()
            except asyncio.TimeoutError:
                answered["well-behaved: no answer within 2 runs' time"] += 1
                continue
            except aiohttp.ClientError as e:  # a connection the server closed or refused
                answered[f"well-behaved: {type(e).__name__}"] += 1
                continue
            if response.status == 200:
                latencies.append(time.perf_counter() - start)
            answered[f"well-behaved: {response.status}"] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=fresh)) as session:
        async with session.post(url + ":predict", data=photo_body) as response:  # warm-up
            await response.read()
        await asyncio.gather(*(client(session) for _ in range(clients)))
    ordered = sorted(latencies)
    if not ordered:  # locked out: said in the table as no answers
        return {"answers": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "answered": dict(answered)}
    return {"answers": len(ordered), "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "answered": dict(answered)}


def _run(url: str, photo_body: bytes, clients: int, seconds: float, abusive: bool, retry_after: float,
         fresh: bool = False, bomb_mib: int = 60) -> Dict:
    """One run: the well-behaved clients here, the abusive one (if any) in a process of its own, so
    neither's event loop delays the other's measurements."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    abuser = context.Process(target=_abuser_process, args=(url, seconds, retry_after, results, bomb_mib)) \
        if abusive else None
    if abuser:
        abuser.start()
        time.sleep(1.0)  # its requests are under way
    result = asyncio.run(_well_behaved(url, photo_body, clients, seconds, fresh))
    if abuser:
        result["answered"].update(results.get(timeout=seconds * 8))
        abuser.join(60)
    result["answered"] = dict(sorted(result["answered"].items()))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--serving-dir", default=None, help="a serving dir with a pushed model (default: an untrained export)")
    p.add_argument("--clients", type=int, default=4, help="well-behaved clients")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per run")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--bomb-mib", type=int, default=60, help="MiB of JSON each gzip body inflates to")
    p.add_argument("--new-connections", action="store_true",
                   help="each well-behaved request on a new connection (as curl sends them), so it needs a free "
                        "connection slot every time; default: kept-alive connections opened once")
    p.add_argument("--skip-unlimited", action="store_true", help="leave out the run with the limits lifted")
    p.add_argument("--retry-after", type=float, default=1.0,
                   help="seconds the abusive client waits to reopen a connection the server refused (503); 0: a "
                        "flood of reconnections, which a rate limiter in front of the server is for")
    args = p.parse_args(argv)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        serving_dir = args.serving_dir
        if serving_dir is None:
            print("exporting the seed's ResNet50 (untrained) ...", flush=True)
            serving_dir = export_untrained(tmp)
        photo = _body([a_photo()])
        results = {}
        runs = [("alone", False, ()), ("beside an abusive client", True, ())]
        if not args.skip_unlimited:
            runs.append(("beside it, limits lifted", True, NO_LIMITS))
        for name, abusive, flags in runs:
            print(f"{name} ...", flush=True)
            server = Server(serving_dir, *flags)
            try:
                results[name] = _run(server.url, photo, args.clients, args.seconds, abusive, args.retry_after,
                                     args.new_connections, args.bomb_mib)
            finally:
                server.stop()
    alone = results["alone"]["p99_ms"]
    print(f"\n{args.clients} well-behaved clients, one photo per request"
          f"{', each on a new connection' if args.new_connections else ''}, {args.seconds:g} s per run; the abusive "
          f"client reopens a refused connection after {args.retry_after:g} s")
    print(f"{'run':<26} {'answers':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99 / alone':>12}")
    for name, r in results.items():
        print(f"{name:<26} {r['answers']:>8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['p99_ms'] / alone:>12.2f}")
    for name, r in results.items():
        if name != "alone":
            print(f"{name}: " + ", ".join(f"{k} x{v}" for k, v in r["answered"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "clients": args.clients, "seconds": args.seconds,
                       "retry_after": args.retry_after, "runs": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
