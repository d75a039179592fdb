"""What the open-source KFP backend's driver and launcher do to a task, played here for `run-local`.

Read from kubeflow/pipelines at 2.17.0 (4a3592c) and 2.5.0 (b13bc9e), `backend/src/v2`:

- `driver/driver.go` provisionOutputs: each output at `<task root>/<name>` with its spec type, plus
  `executor-logs` (`system.Artifact`) when logs are published (the default); `outputFile` under
  the task root's local path (2.5: /tmp/kfp_outputs/output_metadata.json).
- `driver/cache.go`, `cacheutils/cache.go`: the cache key (`CacheKey` proto: input artifact ids,
  parameter values, output artifacts without URIs, output parameter types, image, command and
  arguments, PVC names), as protojson re-marshalled by Go's encoding/json, then SHA-256.
- `component/launcher_v2.go`: `qualifyExecutorLogsForRetry` (2.17: the logs URI gets `-<retry>`),
  `addDefaultParams` (a parameter's default when no value came), `mergeRuntimeArtifacts` (the
  ExecutorOutput's URI replaces, its metadata keys merge, its `customPath` wins), and the upload
  from `customPath` or the URI's local copy, under the root's bucket and prefix (`KeyFromURI`).
- `metadata/client.go`, `converter.go`: outputs are recorded in ML Metadata through
  `StructValueToMLMDValue` (numbers become doubles, bools 0/1, lists `{"list": ...}`, structs
  `{"struct": ...}`, a null fails), with `display_name` and `store_session_info`; inputs are read
  back with `toRuntimeArtifact` (name = the MLMD id) and an empty type (`instanceSchema: ""`).
"""

import copy
import decimal
import hashlib
import json
import math
from typing import Any, Dict, Optional, Tuple

from components.data import stores

EXECUTOR_LOGS = "executor-logs"
LEGACY_OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"  # launcher_v2.go OutputMetadataFilepath


class LaunchError(Exception):
    """What the backend would fail the task with; one line."""


# -- the driver ------------------------------------------------------------------------------------

def provision_outputs(component: Dict[str, Any], task_root: str, publish_logs: bool) -> Dict[str, Any]:
    """The ExecutorInput's outputs.artifacts, as driver.go's provisionOutputs makes them."""
    definitions = dict(component.get("outputDefinitions", {}).get("artifacts", {}))
    if publish_logs:
        definitions[EXECUTOR_LOGS] = {"artifactType": {"schemaTitle": "system.Artifact"}}
    return {name: {"artifacts": [{"name": name, "uri": f"{task_root}/{name}", "type": d["artifactType"],
                                  **({"metadata": d["metadata"]} if d.get("metadata") else {})}]}
            for name, d in sorted(definitions.items())}


def cache_key(task: Dict[str, Any], component: Dict[str, Any], container: Dict[str, Any],
              executor_input: Dict[str, Any], pvc_names: Tuple[str, ...] = ()) -> str:
    """The fingerprint the driver looks a task up by (driver/cache.go getFingerPrint)."""
    custom = task.get("cachingOptions", {}).get("cacheKey")
    if custom:
        name = task.get("componentRef", {}).get("name", "")
        return hashlib.sha256((name.encode() + b"\0" if name else b"") + custom.encode()).hexdigest()
    inputs, outputs = executor_input["inputs"], executor_input["outputs"]
    key: Dict[str, Any] = {
        "inputArtifactNames": {name: {"artifactNames": [a["name"] for a in listed["artifacts"]]}
                               for name, listed in inputs.get("artifacts", {}).items()},
        "inputParameterValues": dict(inputs.get("parameterValues", {})),
        "outputArtifactsSpec": {},
        "outputParametersSpec": {name: spec.get("parameterType", "PARAMETER_TYPE_ENUM_UNSPECIFIED")
                                 for name, spec in component.get("outputDefinitions", {}).get("parameters", {}).items()
                                 if name in outputs.get("parameters", {})},
        "containerSpec": {"image": container.get("image", ""),
                          "cmdArgs": list(container.get("command", [])) + list(container.get("args", []))},
    }
    for name, listed in outputs.get("artifacts", {}).items():
        if listed["artifacts"]:
            first = listed["artifacts"][0]
            key["outputArtifactsSpec"][name] = {k: first[k] for k in ("name", "type", "metadata") if first.get(k)}
    if pvc_names:
        key["containerSpec"]["pvcNames"] = sorted(set(pvc_names))
    return key_fingerprint(key)


def key_fingerprint(key: Dict[str, Any]) -> str:
    """cacheutils GenerateFingerPrint: the CacheKey's protojson, re-marshalled by encoding/json, SHA-256."""
    return hashlib.sha256(go_json(_drop_empty(key)).encode()).hexdigest()


def _drop_empty(value: Any) -> Any:
    """protojson leaves out empty maps, lists and strings."""
    if isinstance(value, dict):
        kept = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [], "", None)}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json.Marshal writes a decoded value: sorted keys, no spaces, HTML escaped."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return _go_number(float(value))
    text = json.dumps(str(value), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _go_number(f: float) -> str:
    """encoding/json's float64: the shortest digits, 'e' form outside [1e-6, 1e21) ("1e-7", "1e+21")."""
    if math.isnan(f) or math.isinf(f):
        raise LaunchError(f"the cache key holds {f}, which Go's JSON cannot encode")
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    exact = decimal.Decimal(repr(f)).normalize()
    if 1e-6 <= abs(f) < 1e21:
        return format(exact, "f")
    sign, digits, exponent = exact.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    power = exponent + len(digits) - 1
    return f"{'-' if sign else ''}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}".replace("e-0", "e-")


# -- the launcher ----------------------------------------------------------------------------------

def qualify_logs(outputs: Dict[str, Any], retry_index: int = 0) -> Dict[str, Any]:
    """2.17's qualifyExecutorLogsForRetry: the executor-logs URI (and custom path) end in -<retry>."""
    result = copy.deepcopy(outputs)
    logs = result.get(EXECUTOR_LOGS, {}).get("artifacts", [])
    if len(logs) == 1:
        suffix = f"-{retry_index}"
        for field in ("uri", "customPath"):
            if logs[0].get(field) and not logs[0][field].endswith(suffix):
                logs[0][field] += suffix
    return result


def add_default_params(executor_input: Dict[str, Any], component: Dict[str, Any]) -> Dict[str, Any]:
    """launcher_v2.go addDefaultParams: a copy where each declared default fills a missing value."""
    result = copy.deepcopy(executor_input)
    values = result.setdefault("inputs", {}).setdefault("parameterValues", {})
    for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
        if "defaultValue" in definition and name not in values:
            values[name] = definition["defaultValue"]
    return result


def merge_output(src: Dict[str, Any], dst: Dict[str, Any], custom_path: bool) -> Dict[str, Any]:
    """launcher_v2.go mergeRuntimeArtifacts: the executor's artifact onto the provisioned one."""
    merged = copy.deepcopy(dst)
    if src.get("uri"):
        merged["uri"] = src["uri"]
    if src.get("metadata") is not None:
        merged["metadata"] = dict(merged.get("metadata") or {}, **src["metadata"])
    if custom_path and src.get("customPath"):
        merged["customPath"] = src["customPath"]
    return merged


def upload_key(uri: str, root: str) -> str:
    """objectstore Config.KeyFromURI: the object key of an output under the run's root, or LaunchError."""
    bucket, prefix = stores.split(root)
    prefixed = f"{root.split('://', 1)[0]}://{bucket}" + (f"/{prefix}" if prefix else "")
    if not uri.startswith(prefixed):
        raise LaunchError(f"URI {uri!r} does not have expected bucket prefix {prefixed!r}")
    key = uri[len(prefixed):].lstrip("/")
    if not key:
        raise LaunchError(f"URI {uri!r} has empty key given prefixed bucket {prefixed!r}")
    return key


# -- ML Metadata, as the launcher records and the driver reads ---------------------------------------

def open_metadata(path: str):
    """An ML Metadata store in a SQLite file (created if missing)."""
    from ml_metadata.metadata_store import metadata_store  # pylint: disable=import-outside-toplevel
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def to_mlmd_value(value: Any, where: str):
    """converter.go StructValueToMLMDValue."""
    from google.protobuf import struct_pb2  # pylint: disable=import-outside-toplevel
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    result = metadata_store_pb2.Value()
    if isinstance(value, bool):
        result.int_value = int(value)
    elif isinstance(value, str):
        result.string_value = value
    elif isinstance(value, (int, float)):
        result.double_value = float(value)
    elif isinstance(value, (list, dict)):
        wrapped = struct_pb2.Struct()
        wrapped.update({"list" if isinstance(value, list) else "struct": value})
        result.struct_value.CopyFrom(wrapped)
    else:
        raise LaunchError(f"unable to produce MLMD artifact for {where}: unknown/unsupported value type "
                          f"{'null' if value is None else type(value).__name__}")
    return result


def _from_mlmd_value(value) -> Any:
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return float(value.int_value)
    if kind == "struct_value":
        return json_format.MessageToDict(value.struct_value)
    raise LaunchError(f"failed to convert MLMD artifact to RuntimeArtifact: unknown property type {kind}")


def record_execution(store, run_id: str, task_name: str, state: str, custom: Optional[Dict[str, str]] = None) -> int:
    """A task's execution (unique by run and task, as the driver names it)."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="system.ContainerExecution"))
    execution = metadata_store_pb2.Execution(type_id=type_id, name=f"run/{run_id}/{task_name}")
    execution.last_known_state = getattr(metadata_store_pb2.Execution, state.upper())
    execution.custom_properties["task_name"].string_value = task_name
    for key, value in (custom or {}).items():
        execution.custom_properties[key].string_value = value
    [execution_id] = store.put_executions([execution])
    return execution_id


def record_outputs(store, execution_id: int, artifacts: Dict[str, Dict[str, Any]], session_info: str) -> None:
    """client.go RecordArtifact for each output, with an OUTPUT event named after it."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    for name, runtime in sorted(artifacts.items()):
        kind = runtime.get("type", {})
        title = kind.get("schemaTitle") or (kind.get("instanceSchema") and "system.Artifact")
        if not title:
            raise LaunchError(f"failed to determine schema for output {name!r}")
        type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=title))
        artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=runtime["uri"], state=metadata_store_pb2.Artifact.LIVE)
        for key, value in (runtime.get("metadata") or {}).items():
            artifact.custom_properties[key].CopyFrom(to_mlmd_value(value, f"output {name!r}, metadata {key!r}"))
        artifact.custom_properties.get_or_create("display_name").string_value = \
            artifact.custom_properties["display_name"].string_value or name
        if not artifact.custom_properties["store_session_info"].string_value:
            artifact.custom_properties["store_session_info"].string_value = session_info
        [artifact_id] = store.put_artifacts([artifact])
        event = metadata_store_pb2.Event(artifact_id=artifact_id, execution_id=execution_id,
                                         type=metadata_store_pb2.Event.OUTPUT)
        event.path.steps.add().key = name
        store.put_events([event])


def read_outputs(store, execution_id: int) -> Dict[str, Dict[str, Any]]:
    """client.go GetOutputArtifactsByExecutionId + converter.go toRuntimeArtifact: name -> RuntimeArtifact."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == metadata_store_pb2.Event.OUTPUT]
    by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs = {}
    for event in events:
        artifact = by_id[event.artifact_id]
        metadata = {k: _from_mlmd_value(v) for k, v in list(artifact.properties.items()) + list(artifact.custom_properties.items())}
        outputs[event.path.steps[0].key] = {"name": str(artifact.id), "uri": artifact.uri, "metadata": metadata}
    return outputs


def input_artifacts(task_name: str, task: Dict[str, Any], produced: Dict[str, Dict[str, Dict[str, Any]]]) -> Dict[str, Any]:
    """The ExecutorInput's inputs.artifacts: upstream outputs as the driver resolves them (no type)."""
    artifacts = {}
    for name, source in task.get("inputs", {}).get("artifacts", {}).items():
        upstream = source.get("taskOutputArtifact")
        if upstream is None:
            raise LaunchError(f"task {task_name}: input artifact {name} is not a task output ({sorted(source)})")
        runtime = dict(produced[upstream["producerTask"]][upstream["outputArtifactKey"]])
        artifacts[name] = {"artifacts": [dict(runtime, type={"instanceSchema": ""})]}
    return artifacts


def task_parameters(task_name: str, task: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """The ExecutorInput's inputs.parameterValues: constants and pipeline parameters."""
    values = {}
    for name, source in task.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            values[name] = params[source["componentInputParameter"]]
        elif "runtimeValue" in source:
            value = source["runtimeValue"]
            values[name] = value["constant"] if "constant" in value else next(iter(value["constantValue"].values()))
        else:
            raise LaunchError(f"task {task_name}: parameter {name} has an unsupported source {sorted(source)}")
    return values


def session_info_json(session: stores.Session) -> str:
    """The store_session_info string the launcher records (Go's json.Marshal of objectstore.SessionInfo)."""
    return go_json(session.info())
