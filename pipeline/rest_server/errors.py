"""TF Serving's errors: canonical codes, their HTTP statuses, and how an exception becomes one.

Every failure a client sees goes through `ServingError` and `body`: `{"error": message}` with the
status TF Serving gives its code (http_server.cc, ToHTTPStatusCode), or the status a limit names.
"""

import json
import re
from typing import Optional

# The canonical error codes (tensorflow/core/protobuf/error_codes.proto), by number, with the HTTP
# status TF Serving answers each with (http_server.cc, ToHTTPStatusCode).
ERROR_CODES = (("OK", 200), ("CANCELLED", 499), ("UNKNOWN", 500), ("INVALID_ARGUMENT", 400),
               ("DEADLINE_EXCEEDED", 504), ("NOT_FOUND", 404), ("ALREADY_EXISTS", 409),
               ("PERMISSION_DENIED", 403), ("RESOURCE_EXHAUSTED", 429), ("FAILED_PRECONDITION", 400),
               ("ABORTED", 409), ("OUT_OF_RANGE", 400), ("UNIMPLEMENTED", 501), ("INTERNAL", 500),
               ("UNAVAILABLE", 503), ("DATA_LOSS", 500), ("UNAUTHENTICATED", 401))
HTTP_STATUS = dict(ERROR_CODES)


class ServingError(Exception):
    """An error as TF Serving reports it: a canonical code name and a message."""

    def __init__(self, code: str, message: str, http_status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status  # 0: TF Serving's for the code

    def __reduce__(self):  # whole across processes (serving.decoding's workers raise it)
        return ServingError, (self.code, self.message, self._http_status)

    @property
    def http_status(self) -> int:
        return self._http_status or HTTP_STATUS.get(self.code, 500)


def body(error: ServingError, indent: Optional[int] = 1) -> bytes:
    """The one body every error is answered with, as TF Serving writes it: {"error": message}
    (`indent` None: on one line, as the connection limit's canned answer is written)."""
    return json.dumps({"error": error.message}, indent=indent).encode()


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def from_exception(e: Exception) -> ServingError:
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
