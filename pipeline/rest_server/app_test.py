"""The server answers as TF Serving's REST API does: status, metadata, predict, errors, batching.

The shapes are TF Serving's own (see codec_test.py for the sources); the model is a real exported
ResNet50 (slow: the export takes about a minute on 2 cores, shared by the module).
"""

import concurrent.futures
import html.parser
import threading
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from components.push import version_dirs
from pipeline.rest_server import app as serving_app, batching
from pipeline.rest_server.codec_test import TF_SERVING_METADATA, TF_SERVING_NOT_FOUND, TF_SERVING_ONE_OUTPUT, TF_SERVING_STATUS
from testsupport.rest_clients import (b64, call, example, image_bytes, png_declaring, predict_one, states,
                                      wait_for)

slow = pytest.mark.slow


@pytest.fixture
def empty_server(tmp_path):
    server = serving_app.BackgroundServer(serving_app.make_app(str(tmp_path / "serving"), serving_app.ServerSettings(poll_seconds=0.1)))
    yield server
    server.stop()


def test_before_the_first_push_the_model_is_not_found(empty_server):
    url = empty_server.url
    status, headers, body = call(url + "v1/models/signs")
    assert (status, body) == (404, {"error": "Could not find any versions of model signs"})
    assert headers["Content-Type"] == "application/json"
    status, _, body = call(url + "v1/models/half:predict", "POST", {"instances": [1.0, 5.0]})
    assert status == 404 and body.keys() == TF_SERVING_NOT_FOUND.keys()
    assert body["error"].startswith("Servable not found for request: Latest(half)")


@pytest.mark.parametrize("method,path,status,message", [
    ("GET", "v1/models/signs:predict", 400, "Malformed request: GET /v1/models/signs:predict"),
    ("PUT", "v1/models/signs", 400, "Malformed request: PUT /v1/models/signs"),
    ("DELETE", "v1/models/signs/versions/1", 400, "Malformed request: DELETE /v1/models/signs/versions/1"),
    ("POST", "v1/models/signs/metadata", 400, "Malformed request: POST /v1/models/signs/metadata"),
    ("GET", "v1/models", 400, "Missing model name in request."),
    ("GET", "v1/foo", 400, "Malformed request: GET /v1/foo"),
    ("POST", "", 405, "Method Not Allowed: POST /"),
    ("GET", "nothing/here", 404, "Not Found: GET /nothing/here"),
], ids=["get-predict", "put", "delete", "post-metadata", "no-model", "not-models", "post-page", "unknown-path"])
def test_a_wrong_method_or_path_is_an_error_and_the_server_goes_on(empty_server, method, path, status, message):
    """TF Serving answers every /v1/ path it cannot parse, any method, with 400 "Malformed request"
    (http_rest_api_handler.cc lines 74-75, 107; http_rest_api_handler_test.cc, UnsupportedApiCalls);
    outside /v1/ there is only the page."""
    got, headers, body = call(empty_server.url + path, method, raw=b"{}" if method in ("POST", "PUT") else None)
    assert (got, body) == (status, {"error": message})
    assert headers["Content-Type"] == "application/json"
    assert call(empty_server.url + "v1/models/signs")[0] == 404  # still answering


class _Tags(html.parser.HTMLParser):
    """Every start tag of a page with its attributes, as a browser's parser reads them."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_served_with_the_model_name_and_loads_nothing_from_elsewhere(tmp_path):
    # A name a URL cannot carry ('he said "5" <b>') is refused by ServerSettings now (serve_test); the
    # page is still rendered autoescaped.
    settings = serving_app.ServerSettings(model_name="signs-v2.1_b", poll_seconds=60)
    server = serving_app.BackgroundServer(serving_app.make_app(str(tmp_path), settings))
    try:
        with urllib.request.urlopen(server.url) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            page = response.read().decode()
    finally:
        server.stop()
    parsed = _Tags()
    parsed.feed(page)
    meta = [a for tag, a in parsed.tags if tag == "meta" and a.get("name") == "model-name"]
    assert meta == [{"name": "model-name", "content": "signs-v2.1_b"}]
    loads = [a.get("src") or a.get("href") for _, a in parsed.tags if a.get("src") or a.get("href")]
    assert all(url.startswith("data:") for url in loads), loads  # nothing from elsewhere
    assert any(tag == "input" and a.get("type") == "file" and a.get("accept") == "image/*" and "capture" in a
               for tag, a in parsed.tags)  # a phone offers its camera
    assert ":predict" in page and "serve_image_bytes" in page  # what its script calls


# --- The server with a real model ---------------------------------------------------------------

slow = pytest.mark.slow



@pytest.fixture(scope="module")
def served(exported_model, tmp_path_factory):
    """A server over a serving directory with version 1 pushed; (server, app)."""
    serving_dir = str(tmp_path_factory.mktemp("serving"))
    assert version_dirs.push(exported_model, serving_dir, {"model_uri": exported_model}) == 1
    app = serving_app.make_app(serving_dir, serving_app.ServerSettings(poll_seconds=0.2, max_request_bytes=2 ** 20))
    server = serving_app.BackgroundServer(app)
    wait_for(lambda: ("1", "AVAILABLE") in states(server.url), "version 1 to load")
    yield server, app
    server.stop()



@slow
def test_status_has_the_shape_of_tf_servings(served):
    server, _ = served
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    for path in ("v1/models/signs", "v1/models/signs/versions/1", "v1/models/signs/labels/anything"):
        status, headers, body = call(server.url + path)
        assert (status, body) == (200, expected), path
        assert headers["Content-Type"] == "application/json"
    assert _keys(body) == _keys(TF_SERVING_STATUS)


def _keys(value):
    """The structure of a JSON value: its keys and the types of its leaves."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return type(value).__name__


@slow
def test_metadata_has_the_shape_of_tf_servings(served):
    server, _ = served
    status, _, body = call(server.url + "v1/models/signs/metadata")
    assert status == 200
    assert call(server.url + "v1/models/signs/versions/1/metadata")[2] == body
    assert body["model_spec"] == {"name": "signs", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "serve_image_bytes", "__saved_model_init_op"}
    theirs = TF_SERVING_METADATA["metadata"]["signature_def"]["signature_def"]["serving_default"]
    image_bytes_signature = signatures["serve_image_bytes"]
    assert _keys(image_bytes_signature["inputs"]["image_bytes"]) == _keys(theirs["inputs"]["x"])
    assert _keys(body["model_spec"]) == _keys(TF_SERVING_METADATA["model_spec"])
    assert image_bytes_signature.keys() == theirs.keys()

    def shape(tensor):
        return tensor["dtype"], [d["size"] for d in tensor["tensor_shape"]["dim"]]

    assert shape(image_bytes_signature["inputs"]["image_bytes"]) == ("DT_STRING", ["-1"])
    assert shape(image_bytes_signature["outputs"]["probabilities"]) == ("DT_FLOAT", ["-1", "6"])
    assert shape(image_bytes_signature["outputs"]["classes"]) == ("DT_INT64", ["-1"])
    assert shape(signatures["serving_default"]["inputs"]["examples"]) == ("DT_STRING", ["-1"])
    assert image_bytes_signature["method_name"] == "tensorflow/serving/predict"


def _assert_same_predictions(predictions, expected):
    """Our JSON against the SavedModel's own outputs. A batch of other sizes may round differently
    in the last bits, so probabilities agree to 1e-6."""
    got = np.array([p["probabilities"] for p in predictions], np.float32)
    np.testing.assert_allclose(got, expected["probabilities"].numpy(), rtol=0, atol=1e-6)
    assert [p["classes"] for p in predictions] == expected["classes"].numpy().tolist()


@slow
def test_predict_through_serve_image_bytes_in_row_and_columnar_format(served, direct):
    server, _ = served
    images = [image_bytes("JPEG", (100, 100), 1), image_bytes("PNG", (320, 240), 2), image_bytes("GIF", (50, 80), 3),
              image_bytes("BMP", (64, 64), 4)]
    expected = direct["serve_image_bytes"](image_bytes=tf.constant(images))
    status, headers, body = call(server.url + "v1/models/signs:predict", "POST",
                                 {"signature_name": "serve_image_bytes", "instances": [b64(i) for i in images]})
    assert status == 200 and headers["X-Model-Version"] == "1"
    assert set(body) == {"predictions"} and all(set(p) == {"probabilities", "classes"} for p in body["predictions"])
    _assert_same_predictions(body["predictions"], expected)

    status, _, body = call(server.url + "v1/models/signs/versions/1:predict", "POST",
                           {"signature_name": "serve_image_bytes", "inputs": {"image_bytes": [b64(i) for i in images]}})
    assert status == 200 and set(body) == {"outputs"} and set(body["outputs"]) == {"probabilities", "classes"}
    columns = body["outputs"]
    _assert_same_predictions([{"probabilities": p, "classes": c} for p, c in zip(columns["probabilities"],
                                                                                   columns["classes"])], expected)


@slow
def test_predict_through_serving_default_with_serialized_examples(served, direct):
    server, _ = served
    examples = [example(image_bytes("PNG", (64, 64), seed)) for seed in (5, 6)]
    expected = direct["serving_default"](examples=tf.constant(examples))["probabilities"].numpy()
    status, _, body = call(server.url + "v1/models/signs:predict", "POST", {"instances": [b64(e) for e in examples]})
    assert status == 200
    # One output: the predictions are its rows, without its name (api_rest.md, "Response format").
    assert set(body) == set(TF_SERVING_ONE_OUTPUT) and all(isinstance(p, list) for p in body["predictions"])
    np.testing.assert_allclose(np.array(body["predictions"], np.float32), expected, rtol=0, atol=1e-6)


@slow
@pytest.mark.parametrize("method,path,request_body,status,message", [
    ("POST", "v1/models/signs:predict", b"not json", 400, "JSON Parse error: Expecting value at offset: 0"),
    ("POST", "v1/models/signs:predict",
     {"signature_name": "serve_image_bytes", "instances": [b64(b"not an image")]}, 400,
     "Unknown image file format. One of JPEG, PNG, GIF, BMP required."),
    ("POST", "v1/models/signs:predict",
     {"signature_name": "serve_image_bytes", "instances": [b64(png_declaring(7000, 7000))]}, 400,
     "the image declares more pixels than the limit of 40000000; not decoded"),
    ("POST", "v1/models/signs:predict", b'{"instances": ["' + b"x" * 2 ** 20 + b'"]}', 413,
     "Request body too large"),
    ("POST", "v1/models/signs:predict", {"signature_name": "nope", "instances": ["x"]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "v1/models/signs/versions/7:predict", {"instances": ["x"]}, 404,
     "Servable not found for request: Specific(signs, 7)"),
    ("GET", "v1/models/signs/versions/7", None, 404, "Could not find version 7 of model signs"),
    ("GET", "v1/models/signs/versions/7/metadata", None, 404, "Servable not found for request: Specific(signs, 7)"),
    ("POST", "v1/models/nope:predict", {"instances": ["x"]}, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("POST", "v1/models/signs/labels/stable:predict", {"instances": ["x"]}, 400,
     "Unrecognized servable version label: stable"),
    ("POST", "v1/models/signs:classify", {"examples": [{"x": 1}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify"),
    ("GET", "v1/models/signs:predict", None, 400, "Malformed request: GET /v1/models/signs:predict"),
    ("PATCH", "v1/models/signs", b"{}", 400, "Malformed request: PATCH /v1/models/signs"),
], ids=["not-json", "not-an-image", "too-many-pixels", "body-too-large", "unknown-signature", "unknown-version",
        "status-of-unknown-version", "metadata-of-unknown-version", "unknown-model", "status-of-unknown-model",
        "label", "classify", "wrong-method", "patch"])
def test_errors_have_tf_servings_status_and_shape_and_the_server_goes_on(served, method, path, request_body,
                                                                          status, message):
    """Status codes from http_server.cc lines 46-87 (INVALID_ARGUMENT 400, NOT_FOUND 404); the messages
    TF Serving gives (json_tensor.cc, get_model_status_impl.cc, basic_manager.cc, server_core.cc)."""
    server, _ = served
    raw = request_body if isinstance(request_body, bytes) else None
    got, headers, body = call(server.url + path, method, request_body if raw is None else None, raw=raw)
    assert got == status and set(body) == {"error"} and message in body["error"], body
    assert "Traceback" not in body["error"] and headers["Content-Type"] == "application/json"
    assert call(server.url + "v1/models/signs")[0] == 200
    answer = call(server.url + "v1/models/signs:predict", "POST",
                  {"signature_name": "serve_image_bytes", "instances": [b64(image_bytes("PNG"))]})
    assert answer[0] == 200




def _sent_together(url, batcher, bodies, monkeypatch):
    """Predicts each body in a request of its own, the model held until all are waiting in the batcher."""
    gate = threading.Event()
    real_call = batching.call_signature
    monkeypatch.setattr(batching, "call_signature", lambda *args: (gate.wait(120), real_call(*args))[1])
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = [pool.submit(predict_one, url, data) for data in bodies]
        wait_for(lambda: batcher.pending == len(bodies), "all requests to reach the batcher", timeout=120)
        gate.set()
        return [a.result() for a in answers]


@slow
def test_concurrent_requests_are_batched_into_few_model_calls(served, direct, monkeypatch):
    """The first request's model call is held until all twelve are waiting: they then go as one batch,
    and each gets its own image's answer back."""
    server, app = served
    batcher = app[serving_app.BATCHER]
    images = [image_bytes("JPEG", (90, 90), seed) for seed in range(12)]
    calls_before = batcher.model_calls
    answers = _sent_together(server.url, batcher, images, monkeypatch)
    assert batcher.model_calls - calls_before <= 2, "twelve waiting requests were not batched"
    assert all(status == 200 for status, _, _ in answers), answers
    expected = direct["serve_image_bytes"](image_bytes=tf.constant(images))
    _assert_same_predictions([body["predictions"][0] for _, _, body in answers], expected)


@slow
def test_a_bad_image_in_a_batch_fails_only_its_own_request(served, direct, monkeypatch):
    server, app = served
    images = [image_bytes("PNG", (70, 70), seed) for seed in range(5)]
    bodies = images[:2] + [b"not an image"] + images[2:]
    answers = _sent_together(server.url, app[serving_app.BATCHER], bodies, monkeypatch)
    assert [status for status, _, _ in answers] == [200, 200, 400, 200, 200, 200]
    assert "Unknown image file format" in answers[2][2]["error"]
    good = [body["predictions"][0] for status, _, body in answers if status == 200]
    _assert_same_predictions(good, direct["serve_image_bytes"](image_bytes=tf.constant(images)))
