"""What one client can hold of the server: each limit answered in TF Serving's error shape, the server going on.

The model is a small Keras model exported with both of the pipeline's signatures (the limits act
before the model; the ResNet is not needed here).
"""

import logging
import socket
import time

import keras
import pytest

from components.push import serving
from pipeline.serving import app as serving_app
from pipeline.serving.testing import b64, call, image_bytes, png_declaring, predict_one, states, wait_for
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
        serving.push(small_model, serving_dir, {})
        server = serving_app.BackgroundServer(serving_app.make_app(serving_dir, serving_app.Settings(
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
    server = server_with(header_timeout_s=60, **limit)
    held = [_connect(server.url) for _ in range(4)]
    time.sleep(0.3)  # the server has accepted them
    extra = _connect(server.url)
    answer = _read_all(extra)
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b'{"error": "Too many open connections; try again later"}')
    for sock in held:
        sock.close()
    wait_for(lambda: call(server.url + "v1/models/signs")[0] == 200, "the server to take connections again", 30)


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
    (b'{"instances": [1]}', {"Content-Encoding": "gzip"}, "Malformed request body"),
], ids=["deep-json", "deep-list", "5000-digits", "gzip-that-is-not"])
def test_client_errors_are_400_without_a_traceback(server_with, caplog, body, headers, message):
    """Each was a 500 with a traceback in the log."""
    server = server_with()
    caplog.set_level(logging.INFO)
    import urllib.request  # pylint: disable=import-outside-toplevel
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
    from pipeline.serving import limits  # pylint: disable=import-outside-toplevel
    data = image_bytes(fmt, (300, 200))
    assert limits.declared_pixels(data) == 60000 == int(export.declared_pixels(tf.constant(data)))
    assert limits.declared_pixels(b"not an image") == 0 and limits.declared_pixels(data[:5]) == 0
