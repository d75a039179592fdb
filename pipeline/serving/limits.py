"""What one client can hold of the server: connections, time to send a request, rows and pixels.

TF Serving bounds none of these on its REST port (its gRPC port has a message size limit); a
server one client can exhaust is not one to put in front of users, so this one does:

- at most `max_connections` open connections, and `max_client_connections` from one client
  address: the next is answered 503 in TF Serving's error shape and closed, so a flood of idle
  connections can neither take every file descriptor nor every slot from the other clients;
- a request's headers must arrive within `header_timeout_s` of the connection opening (or of the
  previous answer on a kept-alive connection), its body within `body_timeout_s` of its headers
  (408); a half-sent request is not held;
- at most `max_request_rows` rows (400, as TF Serving's batching refuses an oversized task) and
  `max_request_pixels` declared image pixels in one request (413), so one request cannot hold the
  model for seconds while everyone else's wait.
"""

import asyncio
import collections
import json
import struct
from typing import Dict, Optional, Set

import numpy as np
from aiohttp import web

from pipeline.serving.errors import ServingError

_BUSY = json.dumps({"error": "Too many open connections; try again later"}).encode()
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, the connection limit and the header clock outside."""

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol):
        self.guard, self.inner = guard, inner
        self.transport: Optional[asyncio.Transport] = None
        self.clock: Optional[asyncio.TimerHandle] = None
        self.admitted = False

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else str(peer)
        if len(self.guard.open) >= self.guard.max_connections or \
                self.guard.per_client[self.client] >= self.guard.max_client_connections:
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self.admitted = True
        self.guard.open.add(self)
        self.guard.per_client[self.client] += 1
        self.guard.by_inner[id(self.inner)] = self
        self.inner.connection_made(transport)
        self.start_clock()

    def start_clock(self):
        self.stop_clock()
        self.clock = asyncio.get_running_loop().call_later(self.guard.header_timeout_s, self.transport.abort)

    def stop_clock(self):
        if self.clock is not None:
            self.clock.cancel()
            self.clock = None

    def data_received(self, data):
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc):
        if not self.admitted:
            return
        self.stop_clock()
        self.guard.open.discard(self)
        self.guard.per_client[self.client] -= 1
        if not self.guard.per_client[self.client]:
            del self.guard.per_client[self.client]
        self.guard.by_inner.pop(id(self.inner), None)
        self.inner.connection_lost(exc)

    def pause_writing(self):
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.admitted:
            self.inner.resume_writing()


class ConnectionGuard:
    """Wraps aiohttp's protocol factory (`web.Server`) with the connection limit and the header clock."""

    def __init__(self, factory, max_connections: int, header_timeout_s: float, max_client_connections: int = 0):
        self.factory = factory
        self.max_connections = max_connections
        self.max_client_connections = max_client_connections or max_connections
        self.header_timeout_s = header_timeout_s
        self.open: Set[_Guarded] = set()
        self.per_client: collections.Counter = collections.Counter()  # open connections by client address
        self.by_inner: Dict[int, _Guarded] = {}

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())

    def request_started(self, protocol) -> None:
        """The headers are in: stop the connection's header clock."""
        guarded = self.by_inner.get(id(protocol))
        if guarded is not None:
            guarded.stop_clock()

    def request_finished(self, protocol) -> None:
        """Answered: the next request on this connection has `header_timeout_s` to arrive."""
        guarded = self.by_inner.get(id(protocol))
        if guarded is not None and guarded.transport is not None and not guarded.transport.is_closing():
            guarded.start_clock()


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite, listening through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, guard_settings, host: str, port: int):
        super().__init__(runner, host, port)
        self.guard: Optional[ConnectionGuard] = None
        self._guard_settings = guard_settings

    async def start(self) -> None:
        self._runner._reg_site(self)  # pylint: disable=protected-access  (BaseSite.start, without TCPSite's)
        max_connections, header_timeout_s, max_client_connections = self._guard_settings
        self.guard = ConnectionGuard(self._runner.server, max_connections, header_timeout_s, max_client_connections)
        self._server = await asyncio.get_running_loop().create_server(self.guard, self._host, self._port,
                                                                      backlog=self._backlog)
        self._bound_port = self._server.sockets[0].getsockname()[1]


_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def declared_pixels(data: bytes) -> int:
    """Width x height an encoded image's header declares, read as `trainer.export.declared_pixels`
    reads it in the model (PNG IHDR, JPEG start of frame, GIF screen, BMP info header); 0 when no
    header is recognised (the model's decoder then refuses it on its own)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width * height
    if data[:3] == b"\xff\xd8\xff":
        pos = 2
        while pos + 9 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
                return width * height
            pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
        return 0
    if data[:4] == b"GIF8" and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width * height
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width * height)
    return 0


def check_rows(doc: Dict, max_rows: int) -> None:
    """Raises ServingError for a request of more rows than `max_rows`, counted in the parsed JSON
    before any value is decoded."""
    def rows(value):
        return len(value) if isinstance(value, list) else 1

    if isinstance(doc.get("instances"), list):
        count = len(doc["instances"])
    elif isinstance(doc.get("inputs"), dict):
        count = max((rows(v) for v in doc["inputs"].values()), default=1)
    else:
        count = rows(doc.get("inputs"))
    if count > max_rows:
        raise ServingError("INVALID_ARGUMENT", f"Task size {count} is larger than maximum input batch size "
                                               f"{max_rows} (--max-request-rows)")


def check_pixels(inputs: Dict[str, np.ndarray], max_pixels: int) -> None:
    """Raises ServingError (413) for a request whose images declare more than `max_pixels` in all,
    before any is decoded."""
    pixels = 0
    for array in inputs.values():
        if array.dtype == object:  # encoded images (and serialized tf.Examples, which declare none)
            for value in array.reshape(-1):
                pixels += declared_pixels(value) if isinstance(value, bytes) else 0
                if pixels > max_pixels:
                    raise ServingError("RESOURCE_EXHAUSTED",
                                       f"The request's images declare more than {max_pixels} pixels in all "
                                       f"(--max-request-pixels); send fewer or smaller images per request", 413)
