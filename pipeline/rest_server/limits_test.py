"""What one client can hold of the server: each limit answered in TF Serving's error shape, the server going on.

The model is a small Keras model exported with both of the pipeline's signatures (the limits act
before the model; the ResNet is not needed here).
"""

import gzip
import json
import logging
import socket
import threading
import time
import urllib.error
import zlib
import urllib.request

import keras
import pytest

from components.push import version_dirs
from pipeline.rest_server import app as serving_app
from testsupport.rest_clients import b64, call, example, image_bytes, png_declaring, predict_one, states, wait_for
from trainer import export


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(6, activation="softmax")])
    path = tmp_path_factory.mktemp("small") / "model"
    export.export_serving_model(model, str(path))
    return str(path)


@pytest.fixture
def server_with(small_model, tmp_path):
    """A factory: a server over version 1 of the small model, with these settings."""
    servers = []

    def start(**settings):
        serving_dir = str(tmp_path / f"serving{len(servers)}")
        version_dirs.push(small_model, serving_dir, {})
        server = serving_app.BackgroundServer(serving_app.make_app(serving_dir, serving_app.ServerSettings(
            poll_seconds=0.1, **settings)))
        servers.append(server)
        wait_for(lambda: ("1", "AVAILABLE") in states(server.url), "version 1 to load")
        return server

    yield start
    for server in servers:
        server.stop()


def _predict(url, rows):
    return call(url + "v1/models/signs:predict", "POST", {"signature_name": "serve_image_bytes", "instances": rows})


def test_more_rows_than_the_limit_are_refused_before_the_model(server_with):
    """8000 tiny PNGs in one request took 49 s and 3 GB."""
    server = server_with(max_request_rows=16)
    tiny = b64(image_bytes("PNG", (4, 4)))
    status, _, body = _predict(server.url, [tiny] * 17)
    assert (status, body) == (400, {"error": "Task size 17 is larger than maximum input batch size 16 "
                                             "(--max-request-rows)"})
    assert _predict(server.url, [tiny] * 16)[0] == 200


def test_more_pixels_than_the_limit_in_one_request_are_refused_before_decoding(server_with):
    """32 photos of 36 MP held the model 9.4 s while a one-photo request waited."""
    server = server_with(max_request_pixels=50_000_000)
    big = b64(png_declaring(6000, 6000))  # 36 MP declared, never decoded
    status, _, body = _predict(server.url, [big, big])
    assert status == 413
    assert body == {"error": "The request's images declare more than 50000000 pixels in all (--max-request-pixels); "
                             "send fewer or smaller images per request"}
    assert predict_one(server.url, image_bytes("JPEG"))[0] == 200


def test_pixels_in_serving_default_examples_count(server_with):
    """A 140 KB tf.Example holding a 12000x12000 PNG was decoded: 8.5 s and +450 MB."""
    server = server_with(max_request_pixels=50_000_000)
    big = b64(example(png_declaring(6000, 6000)))
    status, _, body = call(server.url + "v1/models/signs:predict", "POST", {"instances": [{"examples": big}] * 2})
    assert status == 413 and "declare more than 50000000 pixels" in body["error"]
    small = b64(example(image_bytes("PNG", (64, 64))))
    assert call(server.url + "v1/models/signs:predict", "POST", {"instances": [{"examples": small}]})[0] == 200


def _jpeg_variants():
    """A JPEG with what libjpeg reads past on the way to its frame header: junk before a marker,
    fill bytes, junk after a segment."""
    data = image_bytes("JPEG", (300, 200))
    sof = data.index(b"\xff\xc0")
    return {"junk-before-sof": data[:sof] + b"\x00" + data[sof:],
            "fill-bytes": data[:sof] + b"\xff" * 5 + data[sof:],
            "junk-after-app0": data[:20] + b"junk" + data[20:]}


@pytest.mark.parametrize("name", ["junk-before-sof", "fill-bytes", "junk-after-app0"])
def test_jpeg_pixels_are_found_where_libjpeg_finds_them(name):
    """A JPEG with one junk byte before its SOF counted 0 pixels, and libjpeg decoded it."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from pipeline.rest_server import limits  # pylint: disable=import-outside-toplevel
    data = _jpeg_variants()[name]
    assert tf.io.decode_jpeg(data).shape[:2] == (200, 300)  # libjpeg reads it
    assert limits.declared_pixels(data) == 60000 == int(export.header_pixels(tf.constant(data)))


def _connect(url):
    host, port = url.split("//")[1].rstrip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_all(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("limit", [{"max_connections": 4}, {"max_connections": 100, "max_client_connections": 4}],
                         ids=["all", "one-client"])
def test_connections_over_the_limit_are_answered_503_and_closed(server_with, limit):
    """20k connections reached the file-descriptor limit and the status went unanswered for 20 s."""
    server = server_with(header_timeout_s=60, min_data_rate=0, **limit)  # 0: no idle connection is dropped for room
    held = [_connect(server.url) for _ in range(4)]
    time.sleep(0.3)  # the server has accepted them
    extra = _connect(server.url)
    answer = _read_all(extra)
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b'{"error": "Too many open connections; try again later"}')
    for sock in held:
        sock.close()
    wait_for(lambda: call(server.url + "v1/models/signs")[0] == 200, "the server to take connections again", 30)


def _connect_from(url, address):
    host, port = url.split("//")[1].rstrip("/").split(":")
    sock = socket.socket()
    sock.settimeout(30)
    sock.bind((address, 0))
    sock.connect((host, int(port)))
    return sock


def test_half_sent_bodies_from_many_addresses_do_not_lock_a_good_client_out(server_with):
    """Eight loopback addresses holding 32 half-sent bodies each got a good client 503 on 25 tries."""
    server = server_with(max_connections=8, max_client_connections=2, body_timeout_s=60)
    held = []
    for i in range(4):
        for _ in range(2):
            sock = _connect_from(server.url, f"127.0.0.{i + 2}")
            sock.sendall(b"POST /v1/models/signs:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            held.append(sock)
    time.sleep(0.5)  # each has kept the server waiting past the grace, at a byte or so a second
    assert predict_one(server.url, image_bytes("JPEG"))[0] == 200  # the slowest was dropped to make room
    assert sum(_closed(sock) for sock in held) >= 1  # without an answer
    for sock in held:
        sock.close()


def _closed(sock) -> bool:
    sock.settimeout(0.2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_a_request_whose_headers_never_end_is_dropped(server_with):
    """3000 half-sent requests were held 115 s."""
    server = server_with(header_timeout_s=0.5)
    sock = _connect(server.url)
    sock.sendall(b"POST /v1/models/signs:predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    started = time.monotonic()
    assert _read_all(sock) == b""  # closed without an answer
    assert time.monotonic() - started < 25  # the clock closed it, not the socket's 30 s timeout
    assert call(server.url + "v1/models/signs")[0] == 200


def test_a_body_that_never_arrives_is_answered_408(server_with, caplog):
    server = server_with(body_timeout_s=0.5)
    sock = _connect(server.url)
    sock.sendall(b"POST /v1/models/signs:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"instances\"")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"error": "Request body not received within 0.5 s"' in answer


@pytest.mark.parametrize("body, headers, message", [
    (b"[" * 100_000, {}, "JSON Parse error: nested too deeply"),
    (b'{"instances": ' + b"[" * 900 + b"1" + b"]" * 900 + b"}", {}, None),
    (b'{"instances": [' + b"7" * 5000 + b"]}", {}, "JSON Parse error: Exceeds the limit"),
    (b'{"signature_name": "serve_image_bytes", "instances": ' + b"[" * 900 + b'{"b64": "AAAA"}' + b"]" * 900 + b"}",
     {}, "lists nested more than 32 deep"),
    (b'{"instances": [1]}', {"Content-Encoding": "gzip"}, "Malformed request body"),
], ids=["deep-json", "deep-list", "5000-digits", "deep-list-around-b64", "gzip-that-is-not"])
def test_client_errors_are_400_without_a_traceback(server_with, caplog, body, headers, message):
    """Each was a 500 with a traceback in the log."""
    server = server_with()
    caplog.set_level(logging.INFO)
    request = urllib.request.Request(server.url + "v1/models/signs:predict", data=body, method="POST", headers=headers)
    try:
        urllib.request.urlopen(request, timeout=60)
        status = 200
    except urllib.error.HTTPError as e:
        status, answer = e.code, e.read().decode()
    assert status == 400, answer
    assert message is None or message in answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("pipeline.")]
    assert call(server.url + "v1/models/signs/versions/" + "9" * 5000)[0] == 400


def test_a_client_that_drops_mid_body_leaves_no_traceback(server_with, caplog):
    server = server_with()
    caplog.set_level(logging.INFO)
    sock = _connect(server.url)
    sock.sendall(b"POST /v1/models/signs:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inst")
    sock.close()
    time.sleep(0.5)
    assert call(server.url + "v1/models/signs")[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("pipeline.")]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_declared_pixels_read_the_header_as_the_model_does(fmt):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from pipeline.rest_server import limits  # pylint: disable=import-outside-toplevel
    data = image_bytes(fmt, (300, 200))
    assert limits.declared_pixels(data) == 60000 == int(export.header_pixels(tf.constant(data)))
    assert limits.declared_pixels(b"not an image") == 0 and limits.declared_pixels(data[:5]) == 0


def _post(url, body: bytes, headers):
    request = urllib.request.Request(url + "v1/models/signs:predict", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_compressed_bodies_inflate_within_the_body_limit(server_with, caplog):
    """A 61 KB gzip body inflated to 60 MiB and was parsed on the event loop for 4-9 s; a gzip header
    on a plain body wrote aiohttp's traceback; br answered with a hint to install Brotli."""
    server = server_with(max_request_bytes=1 << 20)
    caplog.set_level(logging.INFO)
    good = json.dumps({"signature_name": "serve_image_bytes", "instances": [b64(image_bytes("JPEG"))]}).encode()
    assert _post(server.url, gzip.compress(good), {"Content-Encoding": "gzip"})[0] == 200
    assert _post(server.url, zlib.compress(good), {"Content-Encoding": "deflate"})[0] == 200
    bomb = gzip.compress(b'{"instances": [' + b"0," * (4 << 20) + b"0]}")  # 8 MiB of JSON in 8 KB
    assert _post(server.url, bomb, {"Content-Encoding": "gzip"}) == (
        413, {"error": "Request body too large: inflates past 1048576 bytes"})
    for _ in range(20):
        status, body = _post(server.url, good, {"Content-Encoding": "gzip"})  # not gzip at all
        assert status == 400 and body["error"].startswith("Malformed request body: not gzip")
    assert _post(server.url, good, {"Content-Encoding": "br"}) == (
        415, {"error": "Content-Encoding 'br' is not supported; send the body as it is, or with gzip or deflate"})
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_large_body_is_parsed_off_the_event_loop(server_with):
    """Three large bodies beside a good client made its request wait 12.3 s instead of 0.23 s."""
    server = server_with()
    big = b'{"instances": [' + b"0," * (15 << 20) + b"0]}"  # 30 MiB of numbers: seconds of parsing
    answers = []
    thread = threading.Thread(target=lambda: answers.append(_post(server.url, big, {})))
    thread.start()
    time.sleep(0.5)  # sent: its parse has begun
    assert predict_one(server.url, image_bytes("JPEG"))[0] == 200
    assert thread.is_alive()  # the good client was answered while the large body was still being parsed
    thread.join(120)
    assert answers[0][0] == 400 and "Task size 15728641 is larger than maximum input batch size" in answers[0][1]["error"]
