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
import struct
import time
from typing import Dict, Optional, Set

import numpy as np
from aiohttp import web

from pipeline.rest_server import errors
from pipeline.rest_server.errors import ServingError

_BUSY = errors.body(ServingError("UNAVAILABLE", "Too many open connections; try again later"), indent=None)
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside; the connection limits, the header clock and the
    data rate of what the client sends outside."""

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol):
        self.guard, self.inner = guard, inner
        self.transport: Optional[asyncio.Transport] = None
        self.clock: Optional[asyncio.TimerHandle] = None
        self.admitted = False
        # Waiting for the client (headers, body, or the next request) since `since`, with
        # `received` bytes in that time; None while the server works on a request.
        self.since: Optional[float] = None
        self.received = 0

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else str(peer)
        if not self.guard.make_room(self.client):
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
        self.since, self.received = time.monotonic(), 0
        self.clock = asyncio.get_running_loop().call_later(self.guard.header_timeout_s, self.transport.abort)

    def stop_clock(self):
        if self.clock is not None:
            self.clock.cancel()
            self.clock = None

    def rate(self, now: float) -> float:
        """Bytes a second the client has sent while the server waited for it; inf while it works."""
        if self.since is None:
            return float("inf")
        return self.received / max(now - self.since, 1e-3)

    def data_received(self, data):
        if self.admitted:
            self.received += len(data)
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
    """Wraps aiohttp's protocol factory (`web.Server`) with the connection limits, the header clock
    and, under pressure, the minimum data rate.

    When every slot is taken (or every slot of the newcomer's address), the slowest connection of
    the address holding the most (`make_room`) is dropped to make room, if it has kept the server
    waiting at least `grace_s` at less than `min_rate` bytes a second: half-sent requests and idle
    kept-alive connections go first, and addresses that open many and send little cannot lock the
    others out. Connections whose request the server is working on are never dropped.
    """

    def __init__(self, factory, max_connections: int, header_timeout_s: float, max_client_connections: int = 0,
                 min_rate: float = 16 * 1024, grace_s: float = 0.25):
        self.factory = factory
        self.max_connections = max_connections
        self.max_client_connections = max_client_connections or max_connections
        self.header_timeout_s = header_timeout_s
        self.min_rate, self.grace_s = min_rate, grace_s
        self.open: Set[_Guarded] = set()
        self.per_client: collections.Counter = collections.Counter()  # open connections by client address
        self.by_inner: Dict[int, _Guarded] = {}
        self.dropped = 0  # slow connections dropped to make room

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())

    def make_room(self, client: str) -> bool:
        """Whether a new connection from `client` may be admitted. An address at its own limit is
        refused. When every slot is taken, one connection of the address holding the most is
        dropped, if the newcomer's address holds fewer and that connection only keeps the server
        waiting: addresses that hold many cannot take slots from each other by reconnecting fast,
        and a client with few finds room."""
        if self.per_client[client] >= self.max_client_connections:
            return False  # an address at its own limit waits for its own connections to end
        if len(self.open) >= self.max_connections:
            donor, held = max(self.per_client.items(), key=lambda item: item[1])
            if self.per_client[client] + 1 >= held:  # the newcomer's address would hold as many: no room
                return False
        else:
            return True
        now = time.monotonic()
        slow = [c for c in self.open if c.client == donor and c.since is not None
                and now - c.since >= self.grace_s and c.rate(now) < self.min_rate]
        if not slow:
            return False
        victim = min(slow, key=lambda c: (c.rate(now), c.since))
        victim.transport.abort()
        if victim in self.open:  # abort() reports the loss later: free the slot now
            victim.connection_lost(None)
            victim.admitted = False
        self.dropped += 1
        return True

    def request_started(self, protocol) -> None:
        """The headers are in: stop the connection's header clock (the body has its own)."""
        guarded = self.by_inner.get(id(protocol))
        if guarded is not None:
            guarded.stop_clock()

    def body_received(self, protocol) -> None:
        """The whole request is in: the server works on it, the client no longer keeps it waiting."""
        guarded = self.by_inner.get(id(protocol))
        if guarded is not None:
            guarded.since = None

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
        max_connections, header_timeout_s, max_client_connections, min_rate = self._guard_settings
        self.guard = ConnectionGuard(self._runner.server, max_connections, header_timeout_s, max_client_connections,
                                     min_rate)
        self._server = await asyncio.get_running_loop().create_server(self.guard, self._host, self._port,
                                                                      backlog=self._backlog)
        self._bound_port = self._server.sockets[0].getsockname()[1]


_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}  # TEM, SOI, RSTn: markers without a segment


def _jpeg_pixels(data: bytes) -> int:
    """The frame size of a JPEG, found as libjpeg finds it (jdmarker.c, `next_marker`): bytes
    before a marker's 0xFF are skipped as junk (a warning there, not an error) and so are fill
    0xFFs; each segment is passed over by its length. 0 where libjpeg would stop before a frame
    (start of scan or end of image first, an unknown marker, a cut-off file)."""
    pos, end = 2, len(data)
    while True:
        pos = data.find(b"\xff", pos)
        while 0 <= pos < end and data[pos] == 0xFF:
            pos += 1
        if pos < 0 or pos >= end:
            return 0
        marker = data[pos]
        pos += 1
        if marker in _JPEG_SOF:
            if pos + 7 > end:
                return 0
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return width * height
        if marker in _JPEG_NO_LENGTH:
            continue
        if marker in (0x00, 0xD9, 0xDA) or pos + 2 > end:
            return 0
        pos += struct.unpack(">H", data[pos:pos + 2])[0]


def declared_pixels(data: bytes) -> int:
    """Width x height an encoded image's header declares, read as the model's decoders read it
    (`trainer.export.header_pixels`: PNG IHDR, JPEG start of frame as libjpeg finds it, GIF
    screen, BMP info header); 0 when no header is recognised (the model's decoder then refuses it
    on its own)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width * height
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_pixels(data)
    if data[:4] == b"GIF8" and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width * height
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width * height)
    return 0


def example_pixels(data: bytes) -> int:
    """The pixels of every encoded image a serialized tf.Example holds (the `serving_default` rows:
    the model decodes its `image` feature, whatever its size); 0 for what is no Example."""
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel  (serving loads TF)
    try:
        example = example_pb2.Example.FromString(data)
    except Exception:  # pylint: disable=broad-except  (google.protobuf.message.DecodeError; the model refuses it too)
        return 0
    return sum(declared_pixels(value) for feature in example.features.feature.values()
               for value in feature.bytes_list.value)


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
        if array.dtype == object:  # encoded images, or serialized tf.Examples holding them
            for value in array.reshape(-1):
                if isinstance(value, bytes):
                    pixels += declared_pixels(value) or example_pixels(value)
                if pixels > max_pixels:
                    raise ServingError("RESOURCE_EXHAUSTED",
                                       f"The request's images declare more than {max_pixels} pixels in all "
                                       f"(--max-request-pixels); send fewer or smaller images per request", 413)
