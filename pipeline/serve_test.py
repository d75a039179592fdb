"""pipeline/serve.py answers as TF Serving's REST API does, so TF Serving's clients work against it.

What TF Serving answers is quoted from its documentation (tensorflow_serving/g3doc/api_rest.md) and
its own tests (model_servers/http_rest_api_handler_test.cc, util/json_tensor_test.cc, and the
metadata they compare with, servables/tensorflow/testdata/saved_model_half_plus_two_2_versions_metadata.json).

The JSON codec is tested on its own (fast); the server with a real exported ResNet50 (slow: the
export takes about a minute on 2 cores, shared by the module).
"""

import base64
import concurrent.futures
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.push import serving
from pipeline import serve

# api_rest.md, "Make REST API calls to ModelServer": `curl http://localhost:8501/v1/models/saved_model_half_plus_three`
TF_SERVING_STATUS = {"model_version_status": [
    {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
# api_rest.md, a predict call on a model with one output: `{"instances": [1.0,2.0,5.0]}` ->
TF_SERVING_ONE_OUTPUT = {"predictions": [3.5, 4.0, 5.5]}
# api_rest.md, an error: `curl -i -d '{"instances": [1.0,5.0]}' -X POST .../v1/models/half:predict` -> 404 and
TF_SERVING_NOT_FOUND = {"error": "Servable not found for request: Latest(half)"}
# saved_model_half_plus_two_2_versions_metadata.json (what GET .../metadata answers), one signature of it.
TF_SERVING_METADATA = {
    "model_spec": {"name": "saved_model_half_plus_two_2_versions", "signature_name": "", "version": "123"},
    "metadata": {"signature_def": {"signature_def": {"serving_default": {
        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                                       {"size": "1", "name": ""}],
                                                               "unknown_rank": False}, "name": "x:0"}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                                        {"size": "1", "name": ""}],
                                                                "unknown_rank": False}, "name": "y:0"}},
        "method_name": "tensorflow/serving/predict", "defaults": {}}}}}}
# json_tensor_test.cc, FromJsonMultipleNamedTensors: several outputs, row format, then columnar.
TF_SERVING_ROWS = {"predictions": [
    {"double_scalar_tensor": 8.0, "float_tensor": [1.0], "int_tensor": [[1, 2], [3, 4], [5, 6]],
     "str_tensor": ["foo", "bar"], "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]},
    {"double_scalar_tensor": 9.0, "float_tensor": [2.0], "int_tensor": [[7, 8], [9, 0], [1, 2]],
     "str_tensor": ["baz", "bat"], "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]}]}
TF_SERVING_COLUMNS = {"outputs": {
    "double_scalar_tensor": [8.0, 9.0], "float_tensor": [[1.0], [2.0]],
    "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
    "str_tensor": [["foo", "bar"], ["baz", "bat"]],
    "str_tensor_bytes": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}}


# --- The JSON codec, against json_tensor_test.cc ------------------------------------------------

def test_row_format_outputs_are_objects_with_several_outputs_and_bare_values_with_one():
    outputs = {"int_tensor": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32),
               "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], object),
               "float_tensor": np.array([[1.0], [2.0]], np.float32),
               "double_scalar_tensor": np.array([8.0, 9.0], np.float64),
               "str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], object)}
    assert serve.response_json(outputs, row_format=True) == TF_SERVING_ROWS
    assert serve.response_json(outputs, row_format=False) == TF_SERVING_COLUMNS
    one = {"y": np.array([3.5, 4.0, 5.5], np.float32)}
    assert serve.response_json(one, row_format=True) == TF_SERVING_ONE_OUTPUT
    assert serve.response_json({"int_tensor": np.zeros((0, 2), np.int32)}, True) == {"predictions": []}


def test_floats_are_written_with_six_digits_when_they_read_back_the_same():
    """json_tensor_test.cc, FromJsonSingleFloatTensorSixDigitPrecision and ...NonFinite."""
    values = np.array([[9000000, 999999, 0.5], [.0003, .00003, 555557.5]], np.float32)
    assert serve.response_json({"t": values}, True) == {"predictions": [[9e+06, 999999.0, 0.5],
                                                                        [0.0003, 3e-05, 555557.5]]}
    text = json.dumps(serve.response_json({"t": np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)}, True))
    assert text == '{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}'
    third = serve.response_json({"t": np.array([1 / 3], np.float32)}, True)["predictions"][0]
    assert json.dumps(third) == "0.333333343" and np.float32(third) == np.float32(1 / 3)  # %.9g


def test_b64_instances_become_a_string_tensor_without_losing_bytes():
    """json_tensor_test.cc, SingleUnnamedTensorBase64Scalars, ...Base64Lists and SingleNamedTensorBase64."""
    inputs = {"default": tf.string}
    tensors, row = serve.request_tensors({"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}, inputs)
    assert row and tensors["default"].tolist() == [b"hello", b"world"]
    tensors, _ = serve.request_tensors({"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}, inputs)
    assert tensors["default"].shape == (2, 1)
    tensors, _ = serve.request_tensors(
        {"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}, inputs)
    assert tensors["default"].shape == (1, 2, 1)
    png_tail = b"IEND\xaeB`\x82\x00\x00"  # numpy's fixed-width bytes would drop the trailing NULs
    tensors, row = serve.request_tensors({"inputs": [{"b64": base64.b64encode(png_tail).decode()}]}, inputs)
    assert not row and tensors["default"].tolist() == [png_tail]
    with pytest.raises(serve.ServingError, match="Unable to base64 decode"):
        serve.request_tensors({"instances": [{"b64": "%%%"}]}, inputs)


@pytest.mark.parametrize("doc,message", [
    ({"signature_name": 5, "instances": [[1, 2]]}, "must be a string value"),
    ({"instances": [[1, 2], [3, 4], [5, 6, 7]], "inputs": [[1, 2]]}, "Not formatted correctly"),
    ({"instances": [[1, 2], [3, 4], [5, 6, 7]]}, "Expecting tensor size: 2 but got: 3"),
    ({"instances": [[1, 2], [3, 4], [[5, 6]]]}, "Expecting shape [2] but got: [1, 2]"),
    ({"instances": [1, [1]]}, "Expecting shape [] but got: [1]"),
    ({"instances": [[1, 2], ["a", "b"]]}, "not of expected type"),
    ({"instances": []}, "No values in 'instances' array"),
    ({"instances": {"x": 1}}, "Expecting 'instances' to be an list/array"),
    ({"signature_name": "x"}, "Missing 'inputs' or 'instances' key"),
    ({"instances": [{"b64": "aGVsbG8="}]}, "Type: Object is not of expected type: int32"),
], ids=["signature-name", "both-formats", "size", "shape", "scalar-and-list", "type", "empty", "not-a-list",
        "no-inputs", "b64-for-a-number"])
def test_malformed_predict_bodies_are_refused_as_tf_serving_refuses_them(doc, message):
    """json_tensor_test.cc, SingleUnnamedTensorErrors (an int32 input), and a few more of json_tensor.cc's errors."""
    with pytest.raises(serve.ServingError) as caught:
        serve.signature_name(doc)
        serve.request_tensors(doc, {"default": tf.int32})
    assert caught.value.code == "INVALID_ARGUMENT" and message in caught.value.message


def test_named_instances_must_all_be_objects_with_every_input():
    """json_tensor_test.cc, MultipleNamedTensorErrors."""
    inputs = {"int_tensor": tf.int32, "str_tensor": tf.string}
    first = {"int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"]}
    for second, message in (
            ({"int_tensor": [[[7, 8], [9, 0], [1, 2]]], "str_tensor": ["baz", "bat"]}, "Expecting shape"),
            ([1, 20, 30], "Expecting object but got list"),
            ({"int_tensor": [[7, 8], [9, 0], [1, 2]]}, "keys must be equal to: int_tensor,str_tensor")):
        with pytest.raises(serve.ServingError, match=message):
            serve.request_tensors({"instances": [first, second]}, inputs)
    with pytest.raises(serve.ServingError, match="Expecting value/list but got object"):
        serve.request_tensors({"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]},
                              {"str_tensor": tf.string})
    tensors, _ = serve.request_tensors({"instances": [first, first]}, inputs)
    assert tensors["int_tensor"].shape == (2, 3, 2) and tensors["str_tensor"].shape == (2, 2)


@pytest.mark.parametrize("body,message", [
    (b"", "JSON Parse error: The document is empty"),
    (b"instances = [1, 2]", "JSON Parse error"),
    (b"[1, 2]", "Is not object"),
    (b"\xff\xfe{}", "Invalid encoding"),
])
def test_bodies_that_are_not_a_json_object_are_parse_errors(body, message):
    with pytest.raises(serve.ServingError, match=message):
        serve.parse_json(body)


def test_json_parsing_takes_nan_and_stops_after_the_document_as_rapidjson_does():
    assert serve.parse_json(b' {"instances": [NaN, Infinity]} trailing')["instances"][1] == float("inf")


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/v1/models/signs", (serve.ModelSpec("signs"), "status")),
    ("GET", "/v1/models/signs/versions/3", (serve.ModelSpec("signs", 3), "status")),
    ("GET", "/v1/models/signs/labels/canary/metadata", (serve.ModelSpec("signs", label="canary"), "metadata")),
    ("GET", "/v1/models/sign%20s/metadata", (serve.ModelSpec("sign s"), "metadata")),
    ("POST", "/v1/models/signs/versions/12:predict", (serve.ModelSpec("signs", 12), "predict")),
    ("POST", "/V1/MODELS/signs:PREDICT", (serve.ModelSpec("signs"), "PREDICT")),  # matches; then malformed
    ("GET", "/v1/models/signs:predict", (None, "")),
    ("POST", "/v1/models/signs", (None, "")),
    ("POST", "/v1/models/foo/version/50:regress", (None, "")),
    ("PUT", "/v1/models/signs", (None, "")),
])
def test_paths_parse_as_tf_servings_regexes_parse_them(method, path, expected):
    """http_rest_api_handler_test.cc, UnsupportedApiCalls; http_rest_api_util.cc's regexes."""
    assert serve.parse_path(method, path) == expected


def test_a_version_beyond_int64_is_refused():
    with pytest.raises(serve.ServingError, match="Failed to convert version"):
        serve.parse_path("POST", f"/v1/models/foo/versions/{2 ** 64 - 1}:regress")


def test_op_errors_lose_their_graph_framing():
    message = ("Graph execution error:\n\nDetected at node map/while/decode_image/DecodeImage defined at (most "
               "recent call last):\n<stack traces unavailable>\nUnknown image file format. One of JPEG, PNG, GIF, "
               "BMP required.\n\t [[{{node map/while/decode_image/DecodeImage}}]] [Op:__inference_signature_4374]")
    assert serve.op_message(message) == "Unknown image file format. One of JPEG, PNG, GIF, BMP required."


# --- A server with nothing pushed yet (no TensorFlow model needed) ---------------------------------

def call(url: str, method: str = "GET", body=None, raw: bytes = None):
    """(HTTP status, headers, JSON body) of one request."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


@pytest.fixture
def empty_server(tmp_path):
    server = serve.BackgroundServer(serve.make_app(str(tmp_path / "serving"), poll_seconds=0.1))
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


def test_the_page_is_served_with_the_model_name_and_loads_nothing_from_elsewhere(tmp_path):
    server = serve.BackgroundServer(serve.make_app(str(tmp_path), model_name='he said "5"', poll_seconds=60))
    try:
        with urllib.request.urlopen(server.url) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            page = response.read().decode()
    finally:
        server.stop()
    assert '<meta name="model-name" content="he said &quot;5&quot;">' in page
    assert "http://" not in page and "https://" not in page
    assert all(url.startswith("data:") for url in re.findall(r'\b(?:src|href)="([^"]*)"', page))
    assert 'type="file" accept="image/*" capture' in page and ":predict" in page and "serve_image_bytes" in page


# --- The server with a real model ---------------------------------------------------------------

slow = pytest.mark.slow


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
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_png]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    """An untrained ResNet50 exported with both signatures (once per session)."""
    path = tmp_path_factory.getbasetemp() / "serve-model"
    if not (path / "saved_model.pb").exists():
        from trainer import export, model  # pylint: disable=import-outside-toplevel
        # The seed's start: an untrained model whose classes are clear of ties in the last bits.
        export.export_serving_model(model.ResNet50(input_shape=(64, 64, 3), classes=6, zero_init_residual=False),
                                    str(path))
    return str(path)


@pytest.fixture(scope="module")
def direct(exported_model):
    """The SavedModel's signatures, called directly."""
    loaded = tf.saved_model.load(exported_model)
    return {name: loaded.signatures[name] for name in ("serving_default", "serve_image_bytes")}


def wait_for(predicate, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def states(url: str, name: str = "signs"):
    status, _, body = call(f"{url}v1/models/{name}")
    return [(v["version"], v["state"]) for v in body["model_version_status"]] if status == 200 else []


def start_serving(serving_dir: str, **settings) -> serve.BackgroundServer:
    server = serve.BackgroundServer(serve.make_app(serving_dir, **settings))
    wait_for(lambda: ("1", "AVAILABLE") in states(server.url), "version 1 to load")
    return server


@pytest.fixture(scope="module")
def served(exported_model, tmp_path_factory):
    """A server over a serving directory with version 1 pushed; (server, app)."""
    serving_dir = str(tmp_path_factory.mktemp("serving"))
    assert serving.push(exported_model, serving_dir, {"model_uri": exported_model}) == 1
    app = serve.make_app(serving_dir, poll_seconds=0.2, max_request_bytes=2 ** 20)
    server = serve.BackgroundServer(app)
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
     {"signature_name": "serve_image_bytes", "instances": [b64(png_declaring(10000, 10000))]}, 400,
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


def predict_one(url: str, data: bytes, version: str = ""):
    path = f"v1/models/signs{'/versions/' + version if version else ''}:predict"
    status, headers, body = call(url + path, "POST", {"signature_name": "serve_image_bytes", "instances": [b64(data)]})
    return status, headers.get("X-Model-Version"), body


@slow
def test_concurrent_requests_are_batched_into_few_model_calls(served, direct, monkeypatch):
    """The first request's model call is held until all twelve are waiting: they then go as one batch,
    and each gets its own image's answer back."""
    server, app = served
    batcher = app[serve.BATCHER]
    gate = threading.Event()
    real_call = serve.call_signature
    monkeypatch.setattr(serve, "call_signature", lambda *args: (gate.wait(120), real_call(*args))[1])
    images = [image_bytes("JPEG", (90, 90), seed) for seed in range(12)]
    calls_before = batcher.model_calls
    with concurrent.futures.ThreadPoolExecutor(len(images)) as pool:
        answers = [pool.submit(predict_one, server.url, data) for data in images]
        wait_for(lambda: batcher.pending == len(images), "all requests to reach the batcher", timeout=120)
        gate.set()
        answers = [a.result() for a in answers]
    assert batcher.model_calls - calls_before <= 2, "twelve waiting requests were not batched"
    assert all(status == 200 for status, _, _ in answers), answers
    expected = direct["serve_image_bytes"](image_bytes=tf.constant(images))
    _assert_same_predictions([body["predictions"][0] for _, _, body in answers], expected)


@slow
def test_a_bad_image_in_a_batch_fails_only_its_own_request(served, direct, monkeypatch):
    server, app = served
    batcher = app[serve.BATCHER]
    gate = threading.Event()
    real_call = serve.call_signature
    monkeypatch.setattr(serve, "call_signature", lambda *args: (gate.wait(120), real_call(*args))[1])
    images = [image_bytes("PNG", (70, 70), seed) for seed in range(5)]
    bodies = images[:2] + [b"not an image"] + images[2:]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = [pool.submit(predict_one, server.url, data) for data in bodies]
        wait_for(lambda: batcher.pending == len(bodies), "all requests to reach the batcher", timeout=120)
        gate.set()
        answers = [a.result() for a in answers]
    assert [status for status, _, _ in answers] == [200, 200, 400, 200, 200, 200]
    assert "Unknown image file format" in answers[2][2]["error"]
    good = [body["predictions"][0] for status, _, body in answers if status == 200]
    _assert_same_predictions(good, direct["serve_image_bytes"](image_bytes=tf.constant(images)))


@slow
def test_a_pushed_version_is_served_without_restart(exported_model, tmp_path, monkeypatch):
    """Version 2 loads while version 1 answers (its load is held), then serves; version 1 ends.
    A version that fails to load leaves version 2 serving; deleting 2 and 3 brings back 1."""
    serving_dir = str(tmp_path / "serving")
    serving.push(exported_model, serving_dir, {})
    server = start_serving(serving_dir, poll_seconds=0.1)
    try:
        gate = threading.Event()
        real_load = serve.load_servable
        monkeypatch.setattr(serve, "load_servable", lambda *args: (gate.wait(120), real_load(*args))[1])
        assert serving.push(exported_model, serving_dir, {}) == 2
        wait_for(lambda: states(server.url) == [("2", "LOADING"), ("1", "AVAILABLE")], "version 2 to start loading")
        photo = image_bytes("JPEG")
        assert predict_one(server.url, photo)[:2] == (200, "1")  # the old version answers meanwhile
        assert predict_one(server.url, photo, "2")[0] == 404
        gate.set()
        wait_for(lambda: states(server.url) == [("2", "AVAILABLE"), ("1", "END")], "version 2 to serve")
        assert predict_one(server.url, photo)[:2] == (200, "2")
        status, _, body = predict_one(server.url, photo, "1")
        assert status == 404 and body["error"].startswith("Servable not found for request: Specific(signs, 1)")
        assert call(server.url + "v1/models/signs/metadata")[2]["model_spec"]["version"] == "2"

        broken = os.path.join(serving_dir, "3")
        os.makedirs(broken + ".tmp")
        with open(os.path.join(broken + ".tmp", serving.SAVED_MODEL), "wb") as f:
            f.write(b"not a SavedModel")
        os.rename(broken + ".tmp", broken)
        wait_for(lambda: states(server.url)[0] == ("3", "END"), "version 3 to fail")
        failed = call(server.url + "v1/models/signs/versions/3")[2]["model_version_status"][0]["status"]
        assert failed["error_code"] != "OK" and failed["error_message"]
        assert predict_one(server.url, photo)[:2] == (200, "2")

        for version in ("2", "3"):  # a rollback: the newest version is 1 again
            shutil.rmtree(os.path.join(serving_dir, version))
        wait_for(lambda: states(server.url) == [("3", "END"), ("2", "END"), ("1", "AVAILABLE")], "version 1 again")
        assert predict_one(server.url, photo)[:2] == (200, "1")
    finally:
        server.stop()


@slow
def test_the_command_line_waits_for_a_first_push_then_serves_it(exported_model, tmp_path):
    """`python -m pipeline.serve` on an empty serving directory: 404 until a push lands, then the model;
    SIGTERM stops it cleanly."""
    serving_dir = str(tmp_path / "serving")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", "--serving-dir", serving_dir, "--port", "0",
                             "--poll-seconds", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        lines = []
        while not any(line.startswith("serving ") for line in lines):
            line = proc.stdout.readline()
            assert line, "the server exited: " + "".join(lines)
            lines.append(line)
        assert any("no version pushed yet" in line for line in lines), lines
        url = lines[-1].split(" at ", 1)[1].split(" ")[0]
        assert call(url + "v1/models/signs")[0] == 404
        serving.push(exported_model, serving_dir, {})
        wait_for(lambda: states(url) == [("1", "AVAILABLE")], "the pushed version to load")
        assert predict_one(url, image_bytes("PNG"))[:2] == (200, "1")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
