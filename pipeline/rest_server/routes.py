"""TF Serving's REST API (tensorflow_serving/model_servers/http_rest_api_handler.cc) over the
version policy and the batcher, and the one place an error becomes an HTTP answer.

- `GET /v1/models/<name>[/versions/<N>]`: model status (GetModelStatusResponse as JSON);
- `GET /v1/models/<name>[/versions/<N>]/metadata`: the signature defs (GetModelMetadataResponse);
- `POST /v1/models/<name>[/versions/<N>]:predict`: see `pipeline.rest_server.codec`;
- errors are `{"error": "<message>"}` with the HTTP status TF Serving gives the error's code. A
  request for a method or path this API does not have is a "Malformed request" (400), as in TF
  Serving; a request body over the size limit is 413 (TF Serving has none; we bound memory), and
  so are the other limits of `limits.py` (rows 400, pixels 413, a body too slow 408).

One addition, which TF Serving clients ignore: a `:predict` answer carries the version that
computed it in the `X-Model-Version` header (the page shows it).
"""

import asyncio
import json
import logging
import re
import urllib.parse
from typing import Dict, Optional, Tuple

import aiohttp
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestPayloadError

from pipeline.rest_server import errors, limits
from pipeline.rest_server.batching import Batcher
from pipeline.rest_server.codec import response_json
from pipeline.rest_server.decoding import Decoder, InputType, encoding_problem
from pipeline.rest_server.errors import ServingError, invalid
from pipeline.rest_server.model_manager import ModelManager, ModelSpec, Signature

log = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"  # our addition: the version that answered a :predict

# The paths TF Serving's handler parses (http_rest_api_util.cc, kPredictionApiGegex and
# kModelStatusApiRegex): name, version, label, then the method or the sub-resource.
PREDICTION_PATH = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                             r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                         r"(?:/(metadata))?", re.IGNORECASE)


def parse_path(method: str, path: str) -> Tuple[Optional[ModelSpec], str]:
    """The model spec and the call ("predict", "metadata", "status", ...) of a /v1/ request, as
    http_rest_api_util.cc's ParseModelInfo; (None, "") if the path does not parse."""
    pattern = PREDICTION_PATH if method == "POST" else STATUS_PATH if method == "GET" else None
    match = pattern.fullmatch(path) if pattern else None
    if not match:
        return None, ""
    name, version, label, call = match.groups()
    if version is not None and (len(version) > 19 or int(version) >= 2 ** 63):
        raise invalid(f"Failed to convert version: {version} to numeric.")
    spec = ModelSpec(urllib.parse.unquote(name or ""), int(version) if version else None,
                     urllib.parse.unquote(label) if label else None)
    if method == "GET":
        call = "metadata" if call == "metadata" else "status"
    return spec, call


class RestApi:
    """TF Serving's HttpRestApiHandler over a ModelManager, a Batcher and a Decoder."""

    def __init__(self, manager: ModelManager, batcher: Batcher, max_rows: int = 256, max_pixels: int = 50_000_000,
                 decoder: Optional[Decoder] = None, max_bytes: int = 64 * 2 ** 20):
        self.manager = manager
        self.batcher = batcher
        self.decoder = decoder or Decoder()
        self.max_rows, self.max_pixels, self.max_bytes = max_rows, max_pixels, max_bytes

    async def process(self, method: str, path: str, body: bytes, encoding: str = "") -> Tuple[Dict, Dict[str, str]]:
        """The response body and extra headers of one request (its body as sent, before
        `encoding`); raises ServingError."""
        spec, call = parse_path(method, path)
        if call not in ("status", "metadata", "classify", "regress", "predict"):  # ":PREDICT" too, as in TF Serving
            raise invalid(f"Malformed request: {method} {path}")
        if call in ("status", "metadata") and not spec.name:
            raise invalid("Missing model name in request.")
        if call == "status":
            return self.manager.status(spec), {}
        if call == "metadata":
            return self.manager.metadata(spec), {}
        try:
            servable, missing = self.manager.servable(spec), None
        except ServingError as e:  # said after the body's own errors, as TF Serving orders them
            servable, missing = None, e
        signatures = {name: {k: InputType.of(v) for k, v in s.inputs.items()}
                      for name, s in servable.signatures.items()} if servable and call == "predict" else {}
        name, inputs, row_format = await self.decoder.decode(body, encoding, self.max_bytes, self.max_rows,
                                                             signatures)
        if missing is not None:
            raise missing
        signature = servable.signature(name)
        if call != "predict":
            raise self._classify_or_regress_error(call, signature)
        limits.check_pixels(inputs, self.max_pixels)  # before the model decodes one
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


def json_response(body: Dict, status: int = 200, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.Response(body=json.dumps(body, indent=1).encode(), status=status, headers=headers,
                        content_type="application/json")


def error_response(error: ServingError, headers: Optional[Dict[str, str]] = None) -> web.Response:
    """The one mapping from an error to what the client gets: TF Serving's body and status."""
    return web.Response(body=errors.body(error), status=error.http_status, headers=headers,
                        content_type="application/json")


CLOSE = {"Connection": "close"}


REST_API = web.AppKey("rest_api", RestApi)
BODY_TIMEOUT = web.AppKey("body_timeout_s", float)
GUARDS = web.AppKey("guards", list)  # the listening sites' ConnectionGuards (limits.py)


async def rest_handler(request: web.Request) -> web.Response:
    encoding = request.headers.get("Content-Encoding", "")
    problem = encoding_problem(encoding)
    if problem is not None:
        return error_response(problem, CLOSE)
    try:
        body = await asyncio.wait_for(request.read(), request.app[BODY_TIMEOUT])
    except web.HTTPRequestEntityTooLarge as e:
        return error_response(ServingError("RESOURCE_EXHAUSTED", f"Request body too large: {e.text}", 413))
    except asyncio.TimeoutError:
        return error_response(ServingError(
            "DEADLINE_EXCEEDED", f"Request body not received within {request.app[BODY_TIMEOUT]:g} s", 408), CLOSE)
    except (ConnectionError, aiohttp.ClientError, http_exceptions.HttpProcessingError, RequestPayloadError) as e:
        # A client that went away mid-body, or a body that is not what its headers say.
        log.debug("%s %s: the body could not be read (%s)", request.method, request.path, e)
        return error_response(invalid(f"Malformed request body: {type(e).__name__}"), CLOSE)
    for guard in request.app[GUARDS]:
        guard.body_received(request.protocol)
    path = request.rel_url.raw_path
    try:
        result, headers = await request.app[REST_API].process(request.method, path, body, encoding)
    except ServingError as e:
        return error_response(e)
    return json_response(result, headers=headers)


@web.middleware
async def header_clock(request: web.Request, handler) -> web.StreamResponse:
    """Tells the connection guards a request's headers are in, and when it has been answered."""
    for guard in request.app[GUARDS]:
        guard.request_started(request.protocol)
    try:
        return await handler(request)
    finally:
        for guard in request.app[GUARDS]:
            guard.request_finished(request.protocol)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error as {"error": ...}, never a traceback; the server goes on."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(ServingError("UNKNOWN", f"{e.reason}: {request.method} {request.path}", e.status))
    except Exception as e:  # pylint: disable=broad-except  (logged with its traceback, answered in one line)
        log.exception("%s %s failed", request.method, request.path)
        return error_response(ServingError("INTERNAL", f"{type(e).__name__}: {e}", 500))
