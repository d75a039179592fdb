"""A request body to input tensors, off the event loop: inflating, parsing JSON, decoding values.

Python's JSON parser and the tensor codec hold the GIL for as long as they run (seconds for tens
of MB of numbers), so a thread would still stall every other connection. Bodies of more than
`INLINE_BYTES`, and every compressed body, are decoded in worker processes instead; a small body
(a photo or two in base64) is decoded on the event loop, where it costs less than a trip to a
worker.

A compressed body (`Content-Encoding: gzip`, `x-gzip` or `deflate`) is inflated within the
server's body limit, counted as bytes come out, so a small body cannot grow past what an
uncompressed one may be. Any other encoding is refused (415) without reading it.
"""

import asyncio
import concurrent.futures
import dataclasses
import multiprocessing
import os
import zlib
from typing import Any, Dict, Optional, Tuple

import numpy as np

from pipeline.rest_server import limits
from pipeline.rest_server.codec import parse_json, request_tensors, signature_name
from pipeline.rest_server.errors import ServingError, invalid

INLINE_BYTES = 64 * 1024  # an uncompressed body up to this is decoded on the event loop (milliseconds)
_CHUNK = 1 << 20
# Content-Encoding -> zlib's wbits: 16 + 15 a gzip member; 15 a zlib stream (HTTP's "deflate").
# A raw deflate stream, which some clients send as "deflate", is tried when the zlib header is absent.
ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


@dataclasses.dataclass(frozen=True)
class InputType:
    """What the codec asks of an input's tf.DType, without TensorFlow (a worker does not load it)."""

    name: str
    is_bool: bool
    is_floating: bool
    is_integer: bool
    min: Any
    max: Any
    as_numpy_dtype: Any

    @classmethod
    def of(cls, dtype) -> "InputType":
        integer = dtype.is_integer
        return cls(dtype.name, dtype.is_bool, dtype.is_floating, integer, dtype.min if integer else None,
                   dtype.max if integer else None, object if dtype.name == "string" else dtype.as_numpy_dtype)


def encoding_problem(encoding: str) -> Optional[ServingError]:
    """The answer to a Content-Encoding this server does not inflate (415); None for one it does."""
    name = encoding.strip().lower()
    if name in ("", "identity") or name in ENCODINGS:
        return None
    return ServingError("INVALID_ARGUMENT", f"Content-Encoding {encoding.strip()[:40]!r} is not supported; send the "
                                            f"body as it is, or with gzip or deflate", 415)


def inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """The body as sent before `encoding`; stops as soon as more than `max_bytes` come out (413)."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    wbits = ENCODINGS[name]
    if wbits == 15 and not (len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0):
        wbits = -15  # no zlib header: a raw deflate stream
    inflater = zlib.decompressobj(wbits)
    out, size, data = [], 0, body
    try:
        while data:
            piece = inflater.decompress(data, _CHUNK)
            size += len(piece)
            if size > max_bytes:
                raise ServingError("INVALID_ARGUMENT", f"Request body too large: inflates past {max_bytes} bytes", 413)
            out.append(piece)
            data = inflater.unconsumed_tail
        if not inflater.eof:
            raise zlib.error("the stream ends early")
    except zlib.error as e:
        raise invalid(f"Malformed request body: not {name} ({e})") from None
    return b"".join(out)


def decode(body: bytes, encoding: str, max_bytes: int, max_rows: int,
           signatures: Dict[str, Dict[str, InputType]]) -> Tuple[str, Optional[Dict[str, np.ndarray]], bool]:
    """A :predict body to (signature name, input tensors, row format); the tensors are None when the
    servable has no signature of that name (the caller then says why). Raises ServingError."""
    doc = parse_json(inflate(body, encoding, max_bytes))
    limits.check_rows(doc, max_rows)  # before any value is decoded: in milliseconds
    name = signature_name(doc)
    inputs = signatures.get(name or "serving_default")
    if inputs is None:
        return name, None, False
    try:
        tensors, row_format = request_tensors(doc, inputs)
    except RecursionError:
        raise invalid("JSON Value: nested too deeply for a tensor") from None
    return name, tensors, row_format


WORKER_NICENESS = 10  # below the server's own priority: the model and small requests come first


def _lower_priority() -> None:
    """A worker's start: yields the CPU to the server process (its event loop, small requests and
    the model's calls) whenever both want it, so large bodies cost the clients that send them."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass


class Decoder:
    """Decodes bodies in `workers` processes (spawned: they load neither TensorFlow nor the model)
    running at a lower priority than the server (`WORKER_NICENESS`)."""

    def __init__(self, workers: int = 0):
        self.workers = workers or min(2, os.cpu_count() or 1)
        self._pool: Optional[concurrent.futures.ProcessPoolExecutor] = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                                                initializer=_lower_priority)
        return self._pool

    async def decode(self, body: bytes, encoding: str, max_bytes: int, max_rows: int,
                     signatures: Dict[str, Dict[str, InputType]]):
        """`decode`, on the event loop for a small uncompressed body, else in a worker process."""
        if len(body) <= INLINE_BYTES and encoding.strip().lower() in ("", "identity"):
            return decode(body, encoding, max_bytes, max_rows, signatures)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor(), decode, body, encoding, max_bytes, max_rows, signatures)
        except concurrent.futures.process.BrokenProcessPool:
            self.close()  # a worker died (out of memory): the next request starts new ones
            raise ServingError("UNAVAILABLE", "The request decoder stopped while decoding this request; "
                                              "try again, or send a smaller request") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
