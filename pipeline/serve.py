"""Serves the pushed model versions over TF Serving's REST API, with a page at / to try the model.

    python -m pipeline.serve --pipeline-root pipeline_output       # http://127.0.0.1:8501/
    curl http://127.0.0.1:8501/v1/models/signs                     # which version is serving
    curl -d '{"signature_name": "serve_image_bytes", "instances": [{"b64": "'$(base64 -w0 hand.jpg)'"}]}' \\
        http://127.0.0.1:8501/v1/models/signs:predict

The REST API is TF Serving's (tensorflow_serving/g3doc/api_rest.md), matched to its source so a
client written against TF Serving, or KServe's TensorFlow runtime, works unchanged:

- `GET /v1/models/<name>[/versions/<N>]`: model status (GetModelStatusResponse as JSON);
- `GET /v1/models/<name>[/versions/<N>]/metadata`: the signature defs (GetModelMetadataResponse);
- `POST /v1/models/<name>[/versions/<N>]:predict`: `instances` (row) or `inputs` (columnar), binary
  values as `{"b64": ...}`; answers `predictions` or `outputs` as json_tensor.cc writes them;
- errors are `{"error": "<message>"}` with the HTTP status http_server.cc gives the error's code
  (400 malformed request or bad input, 404 unknown model or version, ...). A request for a method
  or path this API does not have is a "Malformed request" (400), as in TF Serving; a request body
  over `max_request_bytes` is 413 (TF Serving has no such limit; we need one to bound memory).

One addition, which TF Serving clients ignore: a `:predict` answer carries the version that
computed it in the `X-Model-Version` header (the page shows it).

Version policy: TF Serving's default, `latest` with one version: the newest complete version in the
serving directory is loaded and served. The directory is polled every `poll_seconds`; a new version
is loaded in the background while the old one keeps answering, and served once it has loaded. The
old one is then unloaded (status END). A version that fails to load is reported (END with its
error) and not retried; the old one keeps serving. `/versions/<N>` reaches only the loaded version
(404 otherwise, as in TF Serving). `all`, `specific` and version labels are not supported (a label
is "Unrecognized servable version label", 400, as in TF Serving with none configured).

Batching: predict requests for the same version and signature that arrive within
`batch_timeout_ms` of each other, or while the model is busy with the previous batch, go to the
model as one call of up to about `max_batch_size` rows, run in a thread of its own so the event loop
keeps answering. A batch that fails is re-run request by request, so one bad image fails only its
own request. It pays: on this machine's 2 cores (busy with other work, so +-15%), 16 clients each
sending one photo at a time got 23 answers/s one call per request and 66-71/s batched (5-8 model
calls for 64 requests); one client alone gets the same ~23/s either way. The gain comes from
requests piling up while the model is busy; a 2 ms or 0 ms timeout made no measurable difference.
"""

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import html
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from aiohttp import web

from components.data import storage
from components.push import serving
from pipeline import configs
from trainer import onednn

log = logging.getLogger(__name__)

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_page.html")
DEFAULT_SIGNATURE = "serving_default"  # TF's kDefaultServingSignatureDefKey
VERSION_HEADER = "X-Model-Version"  # our addition: the version that answered a :predict
MAX_REQUEST_BYTES = 64 * 2 ** 20  # a 40-megapixel JPEG is ~20 MB, ~27 MB in base64

# The canonical error codes (tensorflow/core/protobuf/error_codes.proto), by number, with the HTTP
# status TF Serving answers each with (http_server.cc, ToHTTPStatusCode).
ERROR_CODES = (("OK", 200), ("CANCELLED", 499), ("UNKNOWN", 500), ("INVALID_ARGUMENT", 400),
               ("DEADLINE_EXCEEDED", 504), ("NOT_FOUND", 404), ("ALREADY_EXISTS", 409),
               ("PERMISSION_DENIED", 403), ("RESOURCE_EXHAUSTED", 429), ("FAILED_PRECONDITION", 400),
               ("ABORTED", 409), ("OUT_OF_RANGE", 400), ("UNIMPLEMENTED", 501), ("INTERNAL", 500),
               ("UNAVAILABLE", 503), ("DATA_LOSS", 500), ("UNAUTHENTICATED", 401))
HTTP_STATUS = dict(ERROR_CODES)

# The paths TF Serving's handler parses (http_rest_api_util.cc, kPredictionApiGegex and
# kModelStatusApiRegex): name, version, label, then the method or the sub-resource.
PREDICTION_PATH = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                             r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                         r"(?:/(metadata))?", re.IGNORECASE)


class ServingError(Exception):
    """An error as TF Serving reports it: a canonical code name and a message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a request asks for: a model name, and a version or a label (neither: the latest)."""

    name: str
    version: Optional[int] = None
    label: Optional[str] = None

    def describe(self) -> str:
        """As TF Serving's ServableRequest::DebugString (core/manager.h)."""
        return f"Specific({self.name}, {self.version})" if self.version is not None else f"Latest({self.name})"


# --- Loading versions ---------------------------------------------------------------------------

@dataclasses.dataclass
class Signature:
    """One callable signature of a loaded SavedModel, with its inputs' and outputs' dtypes."""

    name: str
    function: Any  # the concrete function
    method_name: str
    inputs: Dict[str, Any]  # input name -> tf.DType
    outputs: Dict[str, Any]  # output name -> tf.DType


@dataclasses.dataclass
class Servable:
    """A loaded version: its signatures and the metadata TF Serving reports for it."""

    name: str
    version: int
    model: Any  # what tf.saved_model.load returned; the signatures need it alive
    signatures: Dict[str, Signature]
    signature_def: Dict  # SignatureDefMap as JSON, for the metadata API

    def signature(self, name: str) -> Signature:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise invalid(f'Serving signature name: "{name}" not found in signature def (version '
                          f'{self.version} has {", ".join(sorted(self.signatures))})')
        return self.signatures[name]


def _serving_meta_graph(saved_model_pb: bytes):
    """The MetaGraphDef tagged `serve` (the one TF Serving loads)."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(saved_model_pb)
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    tags = [list(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(f"saved_model.pb has no MetaGraphDef tagged 'serve'; its tags: {tags}")


def signature_def_json(meta_graph) -> Dict:
    """The signature defs as TF Serving's metadata API writes its SignatureDefMap
    (http_rest_api_util.cc, ToJsonString: proto field names, default values printed, int64 as strings)."""
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel
    return {"signature_def": {name: json_format.MessageToDict(signature, including_default_value_fields=True,
                                                             preserving_proto_field_name=True)
                              for name, signature in meta_graph.signature_def.items()}}


def load_servable(serving_dir: str, version: int, name: str) -> Servable:
    """Loads one pushed version; one in an object store is copied to a temporary directory first.

    Runs in a worker thread: TensorFlow needs seconds to load a ResNet.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    location = serving.version_dir(serving_dir, version)
    remote = storage.is_remote(location)
    local = tempfile.mkdtemp(prefix=f"serve-{name}-{version}-") if remote else location
    try:
        if remote:
            storage.download_tree(location, local)
        with open(os.path.join(local, serving.SAVED_MODEL), "rb") as f:
            meta_graph = _serving_meta_graph(f.read())
        model = tf.saved_model.load(local, tags=["serve"])
    finally:
        if remote:  # the load read the variables into memory
            shutil.rmtree(local, ignore_errors=True)
    signatures = {}
    for key, function in model.signatures.items():
        proto = meta_graph.signature_def[key]
        signatures[key] = Signature(
            key, function, proto.method_name,
            inputs={k: tf.dtypes.as_dtype(v.dtype) for k, v in proto.inputs.items()},
            outputs={k: tf.dtypes.as_dtype(v.dtype) for k, v in proto.outputs.items()})
    return Servable(name, version, model, signatures, signature_def_json(meta_graph))


def _error_from_exception(e: Exception) -> ServingError:
    """A ServingError from a TensorFlow error (its code) or any other exception (UNKNOWN)."""
    code = getattr(e, "error_code", None)
    if isinstance(code, int) and 0 <= code < len(ERROR_CODES):
        return ServingError(ERROR_CODES[code][0], op_message(getattr(e, "message", str(e))))
    return ServingError("UNKNOWN", f"{type(e).__name__}: {e}")


def op_message(message: str) -> str:
    """A TensorFlow op error's message without its framing (graph names, node names, stack notes)."""
    framing = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    lines = [line.strip() for line in message.splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith(framing))
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text) or message.strip()


# --- The version policy -------------------------------------------------------------------------

@dataclasses.dataclass
class VersionState:
    """A version's ModelVersionStatus (get_model_status.proto)."""

    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""

    def json(self, version: int) -> Dict:
        return {"version": str(version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


class ModelManager:
    """Serves the newest version of one model, loading each newly pushed version in the background.

    Lives on the event loop: only `load_servable` runs in a thread.
    """

    def __init__(self, serving_dir: str, name: str, poll_seconds: float):
        self.serving_dir = serving_dir
        self.name = name
        self.poll_seconds = poll_seconds
        self.current: Optional[Servable] = None
        self.states: Dict[int, VersionState] = {}  # every version tried, as TF Serving's monitor keeps them
        self._storage_problem = None

    def servable(self, spec: ModelSpec) -> Servable:
        """The loaded version a request names; NOT_FOUND as TF Serving's manager says it."""
        if spec.label is not None:
            raise invalid(f"Unrecognized servable version label: {spec.label}")
        current = self.current
        if spec.name != self.name or current is None or spec.version not in (None, current.version):
            hint = f" (serving {self.name!r} version {current.version})" if current else ""
            raise ServingError("NOT_FOUND", f"Servable not found for request: {spec.describe()}{hint}")
        return current

    def status(self, spec: ModelSpec) -> Dict:
        """GetModelStatusResponse as JSON: one version's state, or every version's, newest first.

        Labels are ignored here, as in TF Serving (get_model_status_impl.cc reads the version only).
        """
        if spec.version is not None:
            if spec.name != self.name or spec.version not in self.states:
                raise ServingError("NOT_FOUND", f"Could not find version {spec.version} of model {spec.name}")
            return {"model_version_status": [self.states[spec.version].json(spec.version)]}
        if spec.name != self.name or not self.states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {spec.name}")
        return {"model_version_status": [self.states[v].json(v) for v in sorted(self.states, reverse=True)]}

    def metadata(self, spec: ModelSpec) -> Dict:
        """GetModelMetadataResponse as JSON (http_rest_api_util.cc, ToJsonString)."""
        servable = self.servable(spec)
        return {"model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
                "metadata": {"signature_def": servable.signature_def}}

    async def watch(self) -> None:
        """Polls the serving directory for as long as the server runs."""
        while True:
            try:
                await self.poll()
            except Exception:  # pylint: disable=broad-except  (the watcher must outlive any one poll)
                log.exception("polling %s failed; trying again in %s s", self.serving_dir, self.poll_seconds)
            await asyncio.sleep(self.poll_seconds)

    async def poll(self) -> None:
        """Loads the newest version unless it is the one serving or one that failed to load."""
        try:
            versions = await asyncio.to_thread(serving.list_versions, self.serving_dir)
        except (storage.StorageError, OSError) as e:
            if str(e) != self._storage_problem:
                log.warning("cannot list %s: %s; still serving %s", self.serving_dir, e,
                            f"version {self.current.version}" if self.current else "nothing")
            self._storage_problem = str(e)
            return
        self._storage_problem = None
        if not versions:
            return  # an empty listing does not unload what serves (a store may list nothing for a moment)
        newest = versions[-1]  # after a rollback (newer versions deleted), an older one
        serving_now = self.current.version if self.current else None
        failed = newest in self.states and self.states[newest].error_code != "OK"
        if newest != serving_now and not failed:
            await self._load(newest)

    async def _load(self, version: int) -> None:
        self.states[version] = VersionState("LOADING")
        started = time.monotonic()
        try:
            servable = await asyncio.to_thread(load_servable, self.serving_dir, version, self.name)
        except Exception as e:  # pylint: disable=broad-except  (reported in the status and the log)
            error = _error_from_exception(e)
            self.states[version] = VersionState("END", error.code, error.message)
            log.error("version %d of %s failed to load (%s); %s", version, self.serving_dir, error.message,
                      f"still serving version {self.current.version}" if self.current else "nothing to serve")
            return
        old, self.current = self.current, servable
        self.states[version] = VersionState("AVAILABLE")
        if old is not None:
            self.states[old.version] = VersionState("END")
        log.info("serving version %d of %s as %r (loaded in %.1f s)", version, self.serving_dir, self.name,
                 time.monotonic() - started)


# --- Batching ----------------------------------------------------------------------------------

def call_signature(signature: Signature, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Runs a signature on numpy inputs (in the batcher's thread); errors become ServingErrors."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        outputs = signature.function(**{k: tf.constant(v, dtype=signature.inputs[k]) for k, v in inputs.items()})
    except tf.errors.OpError as e:
        raise _error_from_exception(e) from None
    except (TypeError, ValueError) as e:  # inputs that do not bind to the signature
        raise invalid(str(e).strip().splitlines()[0]) from None
    return {k: v.numpy() for k, v in outputs.items()}


@dataclasses.dataclass
class _Request:
    """One predict call waiting in the batcher, and the future its answer goes to."""

    servable: Servable
    signature: Signature
    inputs: Dict[str, np.ndarray]
    result: asyncio.Future

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0] if self.batchable else 1

    @property
    def batchable(self) -> bool:
        """Every input has a batch dimension, the same for all."""
        sizes = {v.shape[0] if v.ndim else None for v in self.inputs.values()}
        return len(sizes) == 1 and None not in sizes

    @property
    def group(self) -> Tuple:
        """Requests of one group can be concatenated into one call."""
        if not self.batchable:
            return (id(self),)
        return (id(self.servable), self.signature.name,
                tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in self.inputs.items())))

    def answer(self, outputs: Dict[str, np.ndarray]) -> None:
        if not self.result.done():  # done: the client went away
            self.result.set_result(outputs)

    def fail(self, error: ServingError) -> None:
        if not self.result.done():
            self.result.set_exception(error)


class Batcher:
    """Collects predict calls into batches, and runs them one batch at a time in a thread.

    `model_calls` and `pending` are there for tests and monitoring.
    """

    def __init__(self, max_batch_size: int = 32, timeout_s: float = 0.002):
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.model_calls = 0  # signature calls made
        self.pending = 0  # requests given to `predict` and not yet answered
        self._queue: "asyncio.Queue[_Request]" = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    async def predict(self, servable: Servable, signature: Signature,
                      inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The signature's outputs for these inputs, computed in a batch with others arriving now."""
        self.pending += 1
        try:
            request = _Request(servable, signature, inputs, asyncio.get_running_loop().create_future())
            self._queue.put_nowait(request)
            return await request.result
        finally:
            self.pending -= 1

    async def run(self) -> None:
        """Forms and runs batches for as long as the server runs."""
        while True:
            batch = await self._collect()
            groups: Dict[Tuple, List[_Request]] = {}
            for request in batch:
                groups.setdefault(request.group, []).append(request)
            for requests in groups.values():
                try:
                    await self._run_group(requests)
                except Exception as e:  # pylint: disable=broad-except  (answered, and logged)
                    log.exception("a batch of %d requests failed", len(requests))
                    for request in requests:
                        request.fail(ServingError("INTERNAL", f"{type(e).__name__}: {e}"))

    async def _collect(self) -> List[_Request]:
        """The requests waiting now, and those arriving within the timeout, up to about max_batch_size rows."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.timeout_s
        while sum(r.rows for r in batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _call(self, signature: Signature, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.model_calls += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, call_signature, signature, inputs)

    async def _run_group(self, requests: List[_Request]) -> None:
        """One call for the group if it can; else one per request, so a bad input fails only its own."""
        requests = [r for r in requests if not r.result.done()]  # done: the client went away
        if len(requests) > 1 and await self._run_together(requests):
            return
        for request in requests:
            try:
                request.answer(await self._call(request.signature, request.inputs))
            except ServingError as e:
                request.fail(e)

    async def _run_together(self, requests: List[_Request]) -> bool:
        """One call on the requests' inputs concatenated, its outputs split by rows; False if it failed
        or its outputs do not split."""
        rows = [r.rows for r in requests]
        inputs = {k: np.concatenate([r.inputs[k] for r in requests]) for k in requests[0].inputs}
        try:
            outputs = await self._call(requests[0].signature, inputs)
        except ServingError:
            return False
        if not all(v.ndim and v.shape[0] == sum(rows) for v in outputs.values()):
            return False
        for request, end in zip(requests, np.cumsum(rows)):
            request.answer({k: v[end - request.rows:end] for k, v in outputs.items()})
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False)


# --- JSON <-> tensors, as json_tensor.cc ----------------------------------------------------------

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


# --- The REST API ------------------------------------------------------------------------------

def parse_path(method: str, path: str) -> Tuple[Optional[ModelSpec], str]:
    """The model spec and the call ("predict", "metadata", "status", ...) of a /v1/ request, as
    http_rest_api_util.cc's ParseModelInfo; (None, "") if the path does not parse."""
    pattern = PREDICTION_PATH if method == "POST" else STATUS_PATH if method == "GET" else None
    match = pattern.fullmatch(path) if pattern else None
    if not match:
        return None, ""
    name, version, label, call = match.groups()
    if version is not None and int(version) >= 2 ** 63:
        raise invalid(f"Failed to convert version: {version} to numeric.")
    spec = ModelSpec(urllib.parse.unquote(name or ""), int(version) if version else None,
                     urllib.parse.unquote(label) if label else None)
    if method == "GET":
        call = "metadata" if call == "metadata" else "status"
    return spec, call


class RestApi:
    """TF Serving's HttpRestApiHandler over a ModelManager and a Batcher."""

    def __init__(self, manager: ModelManager, batcher: Batcher):
        self.manager = manager
        self.batcher = batcher

    async def process(self, method: str, path: str, body: bytes) -> Tuple[Dict, Dict[str, str]]:
        """The response body and extra headers of one request; raises ServingError."""
        spec, call = parse_path(method, path)
        if call not in ("status", "metadata", "classify", "regress", "predict"):  # ":PREDICT" too, as in TF Serving
            raise invalid(f"Malformed request: {method} {path}")
        if call in ("status", "metadata") and not spec.name:
            raise invalid("Missing model name in request.")
        if call == "status":
            return self.manager.status(spec), {}
        if call == "metadata":
            return self.manager.metadata(spec), {}
        doc = parse_json(body)
        name = signature_name(doc)
        servable = self.manager.servable(spec)
        signature = servable.signature(name)
        if call != "predict":
            raise self._classify_or_regress_error(call, signature)
        inputs, row_format = request_tensors(doc, signature.inputs)
        outputs = await self.batcher.predict(servable, signature, inputs)
        return response_json(outputs, row_format), {VERSION_HEADER: str(servable.version)}

    @staticmethod
    def _classify_or_regress_error(call: str, signature: Signature) -> ServingError:
        """TF Serving's answer to :classify or :regress on a signature of another method (classifier.cc,
        regressor.cc); on one of that method, ours: this server implements :predict only."""
        kind = {"classify": "classification", "regress": "regression"}[call]
        wanted = f"tensorflow/serving/{call}"
        if signature.method_name != wanted:
            return invalid(f"Expected {kind} signature method_name to be {wanted}. Was: {signature.method_name}")
        return ServingError("UNIMPLEMENTED", f":{call} is not implemented by this server; use :predict")


def _json_response(body: Dict, status: int = 200, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.Response(body=json.dumps(body, indent=1).encode(), status=status, headers=headers,
                        content_type="application/json")


MANAGER = web.AppKey("manager", ModelManager)
BATCHER = web.AppKey("batcher", Batcher)
REST_API = web.AppKey("rest_api", RestApi)


async def _rest_handler(request: web.Request) -> web.Response:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        return _json_response({"error": f"Request body too large: {e.text}"}, status=413)
    path = request.rel_url.raw_path
    try:
        result, headers = await request.app[REST_API].process(request.method, path, body)
    except ServingError as e:
        return _json_response({"error": e.message}, status=e.http_status)
    return _json_response(result, headers=headers)


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error as {"error": ...}, never a traceback; the server goes on."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _json_response({"error": f"{e.reason}: {request.method} {request.path}"}, status=e.status)
    except Exception as e:  # pylint: disable=broad-except  (logged with its traceback, answered in one line)
        log.exception("%s %s failed", request.method, request.path)
        return _json_response({"error": f"{type(e).__name__}: {e}"}, status=500)


def make_app(serving_dir: str, model_name: str = "signs", poll_seconds: float = 2.0, max_batch_size: int = 32,
             batch_timeout_ms: float = 2.0, max_request_bytes: int = MAX_REQUEST_BYTES) -> web.Application:
    """The server: TF Serving's REST API under /v1/, the page at /.

    Args:
      serving_dir: the TF Serving base directory the pusher writes (a path, or a gs://, s3://, minio:// URL).
      model_name: the name in the URLs, /v1/models/<model_name>.
      poll_seconds: how often to look for a newly pushed version (TF Serving: 1 s).
      max_batch_size: a batch stops collecting requests once it holds this many rows.
      batch_timeout_ms: how long a batch waits for more requests after the first (0: only those
        already waiting; they pile up while the model is busy).
      max_request_bytes: larger request bodies are refused (413).

    Returns:
      An aiohttp application; its startup starts the version watcher and the batcher.
    """
    app = web.Application(client_max_size=max_request_bytes, middlewares=[_json_errors])
    app[MANAGER] = ModelManager(serving_dir, model_name, poll_seconds)
    app[BATCHER] = Batcher(max_batch_size, batch_timeout_ms / 1000)
    app[REST_API] = RestApi(app[MANAGER], app[BATCHER])
    with open(PAGE, encoding="utf-8") as f:
        page = f.read().replace("{{MODEL_NAME}}", html.escape(model_name, quote=True))

    async def page_handler(_):
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/", page_handler)
    app.router.add_route("*", "/{prefix:[vV]1}/{rest:.*}", _rest_handler)
    app.cleanup_ctx.append(_background_tasks)
    return app


async def _background_tasks(app: web.Application):
    """Runs the version watcher and the batcher from startup to cleanup."""
    tasks = [asyncio.create_task(app[MANAGER].watch()), asyncio.create_task(app[BATCHER].run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    app[BATCHER].close()


async def start(app: web.Application, host: str, port: int) -> Tuple[web.AppRunner, str]:
    """Starts serving `app`; returns the runner (to clean up) and the URL (port 0: a free port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}/"


class BackgroundServer:
    """Serves an app from a thread of its own: for tests, benchmarks and notebooks.

        server = BackgroundServer(make_app(serving_dir))   # port 0: a free port
        urllib.request.urlopen(server.url + "v1/models/signs")
        server.stop()
    """

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="serve", daemon=True)
        self._thread.start()
        try:
            self._runner, self.url = asyncio.run_coroutine_threadsafe(start(app, host, port), self._loop).result(60)
        except BaseException:
            self._stop_loop()
            raise

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(60)
        self._loop.close()


# --- The command line --------------------------------------------------------------------------

def _at_least(kind, low, high=None, what="a number"):
    """An argparse type: a `kind` (int or float) from `low` to `high`, saying what it got otherwise."""
    def parse(text: str):
        value = kind(text)
        if not low <= value <= (high if high is not None else value):
            raise argparse.ArgumentTypeError(f"expected {what} >= {low}{f' and <= {high}' if high else ''}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse: "invalid int value: 'x'"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = configs.ShortUsageParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configs.add_flags(parser, only=("pipeline_root", "serving_dir"))  # as the runners and predict take them
    parser.add_argument("--port", type=_at_least(int, 0, 65535, "a port"), default=8501,
                        help="port to listen on (TF Serving's REST port is 8501; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s; 0.0.0.0: every interface)")
    parser.add_argument("--model-name", default="signs",
                        help="the model's name in the URLs: /v1/models/<name> (default %(default)s)")
    parser.add_argument("--poll-seconds", type=_at_least(float, 1e-3), default=2.0,
                        help="how often to look for a newly pushed version, in seconds (default %(default)s)")
    parser.add_argument("--max-batch-size", type=_at_least(int, 1, what="an integer"), default=32,
                        help="rows a batch of concurrent predict requests collects at most (default %(default)s)")
    parser.add_argument("--batch-timeout-ms", type=_at_least(float, 0), default=2.0,
                        help="how long a batch waits for more requests, in milliseconds (default %(default)s)")
    return parser


async def _serve_until_stopped(app: web.Application, host: str, port: int, serving_dir: str, name: str) -> int:
    try:
        runner, url = await start(app, host, port)
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror or e}", flush=True)
        return 1
    print(f"serving {serving_dir} as model {name!r} at {url} (REST API: {url}v1/models/{name})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    onednn.enable()  # before TensorFlow is imported
    serving_dir = configs.config_from_args(args).push_dir
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        pushed = serving.list_versions(serving_dir)
    except storage.StorageError as e:
        print(f"warning: {e}; trying again every {args.poll_seconds:g} s", flush=True)
        pushed = [None]
    if not pushed:
        print(f"{serving_dir}: no version pushed yet; the first one is served as soon as it lands "
              f"(looked for every {args.poll_seconds:g} s)", flush=True)
    app = make_app(serving_dir, args.model_name, args.poll_seconds, args.max_batch_size, args.batch_timeout_ms)
    return asyncio.run(_serve_until_stopped(app, args.host, args.port, serving_dir, args.model_name))


if __name__ == "__main__":
    sys.exit(main())
