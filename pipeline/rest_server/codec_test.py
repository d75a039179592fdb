"""The JSON codec and the request paths answer as TF Serving's do, so TF Serving's clients work unchanged.

What TF Serving answers is quoted from its documentation (tensorflow_serving/g3doc/api_rest.md) and
its own tests (model_servers/http_rest_api_handler_test.cc, util/json_tensor_test.cc, and the
metadata they compare with, servables/tensorflow/testdata/saved_model_half_plus_two_2_versions_metadata.json).
"""

import base64
import json

import numpy as np
import pytest
import tensorflow as tf

from pipeline.rest_server import codec, errors, model_manager, routes


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
    assert codec.response_json(outputs, row_format=True) == TF_SERVING_ROWS
    assert codec.response_json(outputs, row_format=False) == TF_SERVING_COLUMNS
    one = {"y": np.array([3.5, 4.0, 5.5], np.float32)}
    assert codec.response_json(one, row_format=True) == TF_SERVING_ONE_OUTPUT
    assert codec.response_json({"int_tensor": np.zeros((0, 2), np.int32)}, True) == {"predictions": []}


def test_floats_are_written_with_six_digits_when_they_read_back_the_same():
    """json_tensor_test.cc, FromJsonSingleFloatTensorSixDigitPrecision and ...NonFinite."""
    values = np.array([[9000000, 999999, 0.5], [.0003, .00003, 555557.5]], np.float32)
    assert codec.response_json({"t": values}, True) == {"predictions": [[9e+06, 999999.0, 0.5],
                                                                        [0.0003, 3e-05, 555557.5]]}
    text = json.dumps(codec.response_json({"t": np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)}, True))
    assert text == '{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}'
    third = codec.response_json({"t": np.array([1 / 3], np.float32)}, True)["predictions"][0]
    assert json.dumps(third) == "0.333333343" and np.float32(third) == np.float32(1 / 3)  # %.9g


def test_b64_instances_become_a_string_tensor_without_losing_bytes():
    """json_tensor_test.cc, SingleUnnamedTensorBase64Scalars, ...Base64Lists and SingleNamedTensorBase64."""
    inputs = {"default": tf.string}
    tensors, row = codec.request_tensors({"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}, inputs)
    assert row and tensors["default"].tolist() == [b"hello", b"world"]
    tensors, _ = codec.request_tensors({"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}, inputs)
    assert tensors["default"].shape == (2, 1)
    tensors, _ = codec.request_tensors(
        {"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}, inputs)
    assert tensors["default"].shape == (1, 2, 1)
    png_tail = b"IEND\xaeB`\x82\x00\x00"  # numpy's fixed-width bytes would drop the trailing NULs
    tensors, row = codec.request_tensors({"inputs": [{"b64": base64.b64encode(png_tail).decode()}]}, inputs)
    assert not row and tensors["default"].tolist() == [png_tail]
    with pytest.raises(errors.ServingError, match="Unable to base64 decode"):
        codec.request_tensors({"instances": [{"b64": "%%%"}]}, inputs)


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
    with pytest.raises(errors.ServingError) as caught:
        codec.signature_name(doc)
        codec.request_tensors(doc, {"default": tf.int32})
    assert caught.value.code == "INVALID_ARGUMENT" and message in caught.value.message


def test_named_instances_must_all_be_objects_with_every_input():
    """json_tensor_test.cc, MultipleNamedTensorErrors."""
    inputs = {"int_tensor": tf.int32, "str_tensor": tf.string}
    first = {"int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"]}
    for second, message in (
            ({"int_tensor": [[[7, 8], [9, 0], [1, 2]]], "str_tensor": ["baz", "bat"]}, "Expecting shape"),
            ([1, 20, 30], "Expecting object but got list"),
            ({"int_tensor": [[7, 8], [9, 0], [1, 2]]}, "keys must be equal to: int_tensor,str_tensor")):
        with pytest.raises(errors.ServingError, match=message):
            codec.request_tensors({"instances": [first, second]}, inputs)
    with pytest.raises(errors.ServingError, match="Expecting value/list but got object"):
        codec.request_tensors({"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]},
                              {"str_tensor": tf.string})
    tensors, _ = codec.request_tensors({"instances": [first, first]}, inputs)
    assert tensors["int_tensor"].shape == (2, 3, 2) and tensors["str_tensor"].shape == (2, 2)


@pytest.mark.parametrize("body,message", [
    (b"", "JSON Parse error: The document is empty"),
    (b"instances = [1, 2]", "JSON Parse error"),
    (b"[1, 2]", "Is not object"),
    (b"\xff\xfe{}", "Invalid encoding"),
])
def test_bodies_that_are_not_a_json_object_are_parse_errors(body, message):
    with pytest.raises(errors.ServingError, match=message):
        codec.parse_json(body)


def test_json_parsing_takes_nan_and_stops_after_the_document_as_rapidjson_does():
    assert codec.parse_json(b' {"instances": [NaN, Infinity]} trailing')["instances"][1] == float("inf")


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/v1/models/signs", (model_manager.ModelSpec("signs"), "status")),
    ("GET", "/v1/models/signs/versions/3", (model_manager.ModelSpec("signs", 3), "status")),
    ("GET", "/v1/models/signs/labels/canary/metadata", (model_manager.ModelSpec("signs", label="canary"), "metadata")),
    ("GET", "/v1/models/sign%20s/metadata", (model_manager.ModelSpec("sign s"), "metadata")),
    ("POST", "/v1/models/signs/versions/12:predict", (model_manager.ModelSpec("signs", 12), "predict")),
    ("POST", "/V1/MODELS/signs:PREDICT", (model_manager.ModelSpec("signs"), "PREDICT")),  # matches; then malformed
    ("GET", "/v1/models/signs:predict", (None, "")),
    ("POST", "/v1/models/signs", (None, "")),
    ("POST", "/v1/models/foo/version/50:regress", (None, "")),
    ("PUT", "/v1/models/signs", (None, "")),
])
def test_paths_parse_as_tf_servings_regexes_parse_them(method, path, expected):
    """http_rest_api_handler_test.cc, UnsupportedApiCalls; http_rest_api_util.cc's regexes."""
    assert routes.parse_path(method, path) == expected


def test_a_version_beyond_int64_is_refused():
    with pytest.raises(errors.ServingError, match="Failed to convert version"):
        routes.parse_path("POST", f"/v1/models/foo/versions/{2 ** 64 - 1}:regress")


def test_op_errors_lose_their_graph_framing():
    message = ("Graph execution error:\n\nDetected at node map/while/decode_image/DecodeImage defined at (most "
               "recent call last):\n<stack traces unavailable>\nUnknown image file format. One of JPEG, PNG, GIF, "
               "BMP required.\n\t [[{{node map/while/decode_image/DecodeImage}}]] [Op:__inference_signature_4374]")
    assert errors.op_message(message) == "Unknown image file format. One of JPEG, PNG, GIF, BMP required."


# --- A server with nothing pushed yet (no TensorFlow model needed) ---------------------------------
