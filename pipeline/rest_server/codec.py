"""TF Serving's JSON tensor codec (tensorflow_serving/util/json_tensor.cc): requests in, answers out.

`instances` (row format) or `inputs` (columnar), binary values as `{"b64": ...}`; answers
`predictions` or `outputs` as json_tensor.cc writes them, and its error messages word for word.
"""

import base64
import binascii
import json
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from pipeline.rest_server.errors import ServingError, invalid


MAX_RANK = 32  # dimensions of a tensor from JSON: numpy 1.x's limit (TF's is 254), far past any model's


def _debug(value) -> str:
    """A JSON value in an error message, cut at 256 characters (json_tensor.cc, JsonValueToDebugString)."""
    return json.dumps(value, separators=(",", ":"))[:256]


def _json_type(value) -> str:
    for kind, name in ((bool, "Bool"), (type(None), "Null"), (dict, "Object"), (list, "Array"), (str, "String")):
        if isinstance(value, kind):
            return name
    return "Number"


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value, dtype):
    """One JSON scalar as a value of `dtype` (json_tensor.cc, AddValueToTensor)."""
    if dtype.name == "string":
        if _is_b64(value):
            text = value["b64"]
            try:
                return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise invalid(f"Unable to base64 decode {_debug(value)}") from None
        if isinstance(value, str):
            return value.encode("utf-8")
    elif dtype.is_bool:
        if isinstance(value, bool):
            return value
    elif dtype.is_floating:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif dtype.is_integer:
        if isinstance(value, int) and not isinstance(value, bool) and dtype.min <= value <= dtype.max:
            return value
    else:
        raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {_debug(value)} to type: {dtype.name}")
    if isinstance(value, dict):
        if dtype.name == "string":
            raise invalid(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
    raise invalid(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: {dtype.name}")


def tensor_from_json(value, dtype) -> np.ndarray:
    """A dense tensor from a JSON value: a scalar or nested lists, shaped by their first elements
    (json_tensor.cc, GetDenseTensorShape and FillTensorProto)."""
    shape = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if len(shape) > MAX_RANK:
            raise invalid(f"JSON Value: lists nested more than {MAX_RANK} deep; a tensor has at most {MAX_RANK} "
                          f"dimensions here")
        if not probe:
            break
        probe = probe[0]
    flat = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise invalid(f"JSON Value: {_debug(item)} found at incorrect level: {level + 1} in the JSON DOM. "
                              f"Expected at level: {len(shape)}")
            flat.append(_leaf(item, dtype))
            return
        if level >= len(shape):
            raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
        if len(item) != shape[level]:
            raise invalid(f"Encountered list at unexpected size: {len(item)} at level: {level} "
                          f"expected size: {shape[level]}")
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    array = np.empty(len(flat), dtype=dtype.as_numpy_dtype)  # object for strings: numpy's bytes drop trailing NULs
    array[:] = flat
    return array.reshape(shape)


def _instance_item(value, dtype, first: Optional[np.ndarray]) -> np.ndarray:
    """One input of one instance; it must have the size and shape of the first (json_tensor.cc, AddInstanceItem)."""
    tensor = tensor_from_json(value, dtype)
    if first is not None and tensor.size != first.size:
        raise invalid(f"Expecting tensor size: {first.size} but got: {tensor.size}")
    if first is not None and tensor.shape != first.shape:
        raise invalid(f"Expecting shape {list(first.shape)} but got: {list(tensor.shape)}")
    return tensor


def _from_instances(instances: List, inputs: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Named tensors from the row format (json_tensor.cc, FillTensorMapFromInstancesList)."""
    def is_named(item):
        return isinstance(item, dict) and not _is_b64(item)

    if not is_named(instances[0]) and len(inputs) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                      f"required as per tensorinfo_map (inputs: {', '.join(sorted(inputs))})")
    named = is_named(instances[0])
    rows: Dict[str, List[np.ndarray]] = {name: [] for name in inputs}
    for i, item in enumerate(instances):
        if named != is_named(item):
            raise invalid(f"Expecting {'object but got list' if named else 'value/list but got object'} "
                          f"at item {i} of input list")
        values = item if named else {next(iter(inputs)): item}
        if set(values) != set(inputs):
            raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: {_debug(item)} "
                          f"keys must be equal to: {','.join(sorted(inputs))}")
        for name, value in values.items():
            try:
                rows[name].append(_instance_item(value, inputs[name], rows[name][0] if rows[name] else None))
            except ServingError as e:
                raise invalid(f"Failed to process element: {i}{' key: ' + name if named else ''} of "
                              f"'instances' list. Error: {e.code}: {e.message}") from None
    return {name: np.stack(tensors) for name, tensors in rows.items()}


def _from_inputs(value, inputs: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Named tensors from the columnar format (json_tensor.cc, FillTensorMapFromInputsMap)."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(inputs) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                          f"required as per tensorinfo_map (inputs: {', '.join(sorted(inputs))})")
        name = next(iter(inputs))
        return {name: tensor_from_json(value, inputs[name])}
    missing = [name for name in inputs if name not in value]
    if missing:
        raise invalid(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: tensor_from_json(value[name], dtype) for name, dtype in inputs.items()}


def parse_json(body: bytes) -> Dict:
    """The request's JSON object; like rapidjson in TF Serving, NaN and Infinity are accepted and
    what follows the first document is ignored."""
    try:
        text = body.decode("utf-8").lstrip(" \t\r\n")
    except UnicodeDecodeError as e:
        raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    if not text:
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as e:
        raise invalid(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply") from None
    except ValueError as e:  # a number of thousands of digits
        raise invalid(f"JSON Parse error: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {_debug(doc)} Is not object")
    return doc


def signature_name(doc: Dict) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a "
                      "string value.")
    return name


def request_tensors(doc: Dict, inputs: Dict[str, Any]) -> Tuple[Dict[str, np.ndarray], bool]:
    """The named input tensors of a predict request, and whether it is in row format
    (json_tensor.cc, FillPredictRequestFromJson)."""
    if "instances" in doc and "inputs" in doc:
        raise invalid(f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of 'inputs' or "
                      "'instances' keys to exist ")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid(f"JSON Value: {_debug(doc)} No values in 'instances' array")
        return _from_instances(instances, inputs), True
    if "inputs" in doc:
        return _from_inputs(doc["inputs"], inputs), False
    raise invalid("Missing 'inputs' or 'instances' key")


def _decimal(value, dtype: np.dtype) -> float:
    """A float as TF Serving writes it (json_tensor.cc, WriteDecimal): six significant digits when they
    read back as the same value, else as many as it takes."""
    value = dtype.type(value)
    if not np.isfinite(value):
        return float(value)  # json writes NaN, Infinity, -Infinity, as TF Serving does
    short = float(f"{float(value):g}")
    if dtype.type(short) == value:
        return short
    return float(f"{float(value):.9g}") if dtype == np.float32 else float(value)  # max_digits10; repr for doubles


def _json_tensor(array: np.ndarray, as_bytes: bool):
    """Nested lists of JSON values; strings named *_bytes as {"b64": ...} (json_tensor.cc, AddTensorValues)."""
    def leaf(value):
        if isinstance(value, bytes):
            return {"b64": base64.b64encode(value).decode()} if as_bytes else value.decode("utf-8", "replace")
        return _decimal(value, array.dtype) if array.dtype.kind == "f" else value

    values = iter([leaf(v) for v in array.ravel().tolist()])

    def nest(shape):
        return [nest(shape[1:]) for _ in range(shape[0])] if shape else next(values)

    return nest(array.shape)


def response_json(outputs: Dict[str, np.ndarray], row_format: bool) -> Dict:
    """`predictions` (row format) or `outputs` (columnar); one output is written without its name
    (json_tensor.cc, MakeRowFormatJsonFromTensors and MakeColumnarFormatJsonFromTensors)."""
    values = {name: _json_tensor(array, name.endswith("_bytes") and array.dtype == object)
              for name, array in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    sizes = set()
    for name, array in outputs.items():
        if not array.ndim:
            raise invalid(f"Tensor name: {name} has no shape information ")
        sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise invalid(f"Tensor names {', '.join(outputs)} have inconsistent batch sizes {sorted(sizes)}")
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: rows[i] for name, rows in values.items()} for i in range(sizes.pop())]}
