"""The version policy: which pushed version serves, loading each new one in the background.

TF Serving's default policy, `latest` with one version: the newest complete version in the serving
directory is loaded and served. The directory is polled every `poll_seconds`; a new version is
loaded in the background while the old one keeps answering, and served once it has loaded. The old
one is then unloaded (status END). A version that fails to load, or that `version_dirs.model_problem`
finds cannot be (garbage, truncated, a FIFO), is reported (END with its error) and tried again
with backoff; meanwhile the old one keeps serving, or the newest older one that loads. `/versions/<N>` reaches only the loaded version (404
otherwise, as in TF Serving). `all`, `specific` and version labels are not supported (a label is
"Unrecognized servable version label", 400, as in TF Serving with none configured).
"""

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Optional

from components.data import storage
from components.push import version_dirs
from pipeline.rest_server.errors import ServingError, from_exception, invalid

log = logging.getLogger(__name__)

# A version that failed to load is tried again after 2 s, then 4, 8, ... at most every 5 minutes
# (TF Serving: max_num_load_retries, load_retry_interval_micros), so a copy completed later is served.
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0

DEFAULT_SIGNATURE = "serving_default"  # TF's kDefaultServingSignatureDefKey


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
    location = version_dirs.version_dir(serving_dir, version)
    remote = storage.is_remote(location)
    local = tempfile.mkdtemp(prefix=f"serve-{name}-{version}-") if remote else location
    try:
        if remote:
            storage.download_tree(location, local)
        problem = version_dirs.model_problem(local)  # before any read: a FIFO would block the loader for good
        if problem:
            raise ServingError("FAILED_PRECONDITION", f"{location} cannot be served: {problem}")
        with open(os.path.join(local, version_dirs.SAVED_MODEL), "rb") as f:
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


# --- The version policy -------------------------------------------------------------------------

@dataclasses.dataclass
class VersionState:
    """A version's ModelVersionStatus (get_model_status.proto)."""

    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""
    failures: int = 0  # failed loads in a row
    retry_at: float = 0.0  # time.monotonic() after which a failed version is tried again

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
            versions = await asyncio.to_thread(version_dirs.list_versions, self.serving_dir)
        except (storage.StorageError, OSError) as e:
            if str(e) != self._storage_problem:
                log.warning("cannot list %s: %s; still serving %s", self.serving_dir, e,
                            f"version {self.current.version}" if self.current else "nothing")
            self._storage_problem = str(e)
            return
        self._storage_problem = None
        if not versions:
            return  # an empty listing does not unload what serves (a store may list nothing for a moment)
        serving_now = self.current.version if self.current else None
        # The newest version that loads; after a rollback (newer versions deleted), an older one.
        for version in reversed(versions):
            if version == serving_now:
                return
            state = self.states.get(version)
            if state is not None and state.error_code != "OK" and time.monotonic() < state.retry_at:
                continue  # failed; retried later, meanwhile the next older one may serve
            if await self._load(version):
                return

    async def _load(self, version: int) -> bool:
        """Loads a version and serves it; False if it failed (then retried with backoff, as TF Serving does)."""
        failures = self.states[version].failures if version in self.states else 0
        self.states[version] = VersionState("LOADING", failures=failures)
        started = time.monotonic()
        try:
            servable = await asyncio.to_thread(load_servable, self.serving_dir, version, self.name)
        except Exception as e:  # pylint: disable=broad-except  (reported in the status and the log)
            error = from_exception(e)
            delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** failures)
            self.states[version] = VersionState("END", error.code, error.message, failures + 1,
                                                time.monotonic() + delay)
            log.error("version %d of %s failed to load (%s); %s; trying it again in %.0f s", version, self.serving_dir,
                      error.message, f"serving version {self.current.version}" if self.current else "not serving yet",
                      delay)
            return False
        old, self.current = self.current, servable
        self.states[version] = VersionState("AVAILABLE")
        if old is not None:
            self.states[old.version] = VersionState("END")
        log.info("serving version %d of %s as %r (loaded in %.1f s)", version, self.serving_dir, self.name,
                 time.monotonic() - started)
        return True
