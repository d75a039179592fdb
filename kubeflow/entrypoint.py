"""The command every task of the compiled package runs, in place of TFX's `kubeflow_v2_run_executor`.

    python -m kubeflow.entrypoint --executor_class_path C --json_serialized_invocation_args '{{$}}'
        --json_serialized_inputs_spec_args SPEC [beam args ...]

It takes the ExecutorInput exactly as the open-source KFP 2.x launcher gives it (read from
kubeflow/pipelines `backend/src/v2`), turns it into what TFX's entrypoint understands, runs TFX's
entrypoint, and writes the ExecutorOutput the launcher expects:

- **Input types.** The driver resolves inputs through its metadata client, which leaves the type
  empty (`metadata/client.go`: `Schema: ""`), so inputs arrive as `type: {instanceSchema: ""}` and
  TFX cannot tell which artifact class to build (tensorflow/tfx#7768). The type is taken from the
  task's own inputs spec (`--json_serialized_inputs_spec_args`, written at compile time).
- **`executor-logs`.** From backend 2.5.0 the driver adds this output (`system.Artifact`) to every
  task for the launcher's own use; it is removed before TFX sees the outputs.
- **URIs.** Artifact URIs are remote (`minio://`, `s3://`, `gs://`); the launcher downloads inputs
  to, and uploads outputs from, local copies at `/minio/<rest>`, `/s3/<rest>`, `/gcs/<rest>`
  (`LocalPathForURI` in `component/launcher_v2.go`). TFX's executors run on those local paths, so
  TensorFlow never opens an object store itself (and never writes a `dir/` marker object). A plain
  path is used as it is.
- **ExecutorOutput.** Written to `outputs.outputFile` with the remote URIs: the launcher copies a
  URI found there over its own (`mergeRuntimeArtifacts`), so a local one would be published.
- **Parameters** that are not the component's (the data fingerprint, a cache key) are dropped.

`SIGNS_LAUNCHER_LOCAL_ROOT` (default `/`) stands for the pod's `/`, where those local copies and
the output file live; `run-local` sets it.
"""

import argparse
import copy
import json
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from components.data import startup

LOCAL_ROOT_ENV = "SIGNS_LAUNCHER_LOCAL_ROOT"
EXECUTOR_LOGS = "executor-logs"
# LocalPathForURI: remote scheme -> the launcher's local directory.
LOCAL_DIRS = (("gs://", "gcs"), ("minio://", "minio"), ("s3://", "s3"))


class LauncherInputError(Exception):
    """The ExecutorInput cannot be run; the message is one line."""


def local_path(uri: str, root: str = "/") -> Optional[str]:
    """The launcher's local copy of a remote URI; None for a plain path (used as it is)."""
    for prefix, directory in LOCAL_DIRS:
        if uri.startswith(prefix):
            return os.path.join(root, directory, uri[len(prefix):])
    if "://" in uri:
        raise LauncherInputError(f"artifact URI {uri}: the KFP launcher makes no local copy of this scheme")
    return None


def _has_type(artifact: Dict[str, Any]) -> bool:
    kind = artifact.get("type") or {}
    return bool(kind.get("schemaTitle") or kind.get("instanceSchema"))


def adapt(executor_input: Dict[str, Any], inputs_spec: Dict[str, Any],
          root: str = "/") -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Turns the launcher's ExecutorInput into the one TFX's entrypoint runs.

    Args:
      executor_input: the ExecutorInput JSON as the launcher substituted it for `{{$}}`.
      inputs_spec: the component's ComponentInputsSpec JSON (artifacts and parameters).
      root: where the launcher's local copies live (`/` in a pod).

    Returns:
      (the adapted ExecutorInput, local path -> remote URI for every artifact that was mapped).
    """
    adapted = copy.deepcopy(executor_input)
    inputs = adapted.setdefault("inputs", {})
    spec_artifacts = inputs_spec.get("artifacts", {})
    for name, artifacts in inputs.get("artifacts", {}).items():
        for artifact in artifacts.get("artifacts", []):
            if not _has_type(artifact):
                if name not in spec_artifacts:
                    raise LauncherInputError(f"input artifact {name!r} has no type and the component declares no such input")
                artifact["type"] = copy.deepcopy(spec_artifacts[name]["artifactType"])
    outputs = adapted.setdefault("outputs", {})
    outputs.setdefault("artifacts", {}).pop(EXECUTOR_LOGS, None)
    if not outputs.get("outputFile"):
        raise LauncherInputError("the ExecutorInput has no outputs.outputFile")
    outputs["outputFile"] = os.path.join(root, outputs["outputFile"].lstrip("/"))  # a pod path

    remote_of: Dict[str, str] = {}
    for section in (inputs, outputs):
        for artifacts in section.get("artifacts", {}).values():
            for artifact in artifacts.get("artifacts", []):
                local = local_path(artifact.get("uri", ""), root)
                if local is not None:
                    remote_of[local] = artifact["uri"]
                    artifact["uri"] = local

    declared = inputs_spec.get("parameters")
    if declared is not None:
        values = inputs.get("parameterValues", {})
        for name in [n for n in values if n not in declared]:
            del values[name]
    return adapted, remote_of


def remote_output(executor_output: Dict[str, Any], remote_of: Dict[str, str]) -> Dict[str, Any]:
    """The ExecutorOutput with each local artifact path put back to its remote URI."""
    result = copy.deepcopy(executor_output)
    for artifacts in result.get("artifacts", {}).values():
        for artifact in artifacts.get("artifacts", []):
            uri = artifact.get("uri", "")
            if uri in remote_of:
                artifact["uri"] = remote_of[uri]
            elif uri.rstrip("/") in remote_of:
                artifact["uri"] = remote_of[uri.rstrip("/")]
    return result


def parse_args(argv: List[str]) -> Tuple[argparse.Namespace, List[str]]:
    """The arguments of TFX's entrypoint; the rest are Beam arguments."""
    parser = argparse.ArgumentParser(prog="python -m kubeflow.entrypoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor_class_path", required=True, help="<module>.<class> of the TFX executor")
    parser.add_argument("--json_serialized_invocation_args", required=True,
                        help="the ExecutorInput JSON (KFP's {{$}} placeholder)")
    parser.add_argument("--json_serialized_inputs_spec_args", default="{}",
                        help="the component's ComponentInputsSpec JSON")
    return parser.parse_known_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    startup.start_process()  # before the executors import TensorFlow
    root = os.environ.get(LOCAL_ROOT_ENV, "/")
    try:
        executor_input = json.loads(args.json_serialized_invocation_args)
        inputs_spec = json.loads(args.json_serialized_inputs_spec_args or "{}")
        adapted, remote_of = adapt(executor_input, inputs_spec, root)
    except (ValueError, LauncherInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for artifacts in adapted["outputs"]["artifacts"].values():
        for artifact in artifacts.get("artifacts", []):
            if "://" not in artifact["uri"]:
                os.makedirs(artifact["uri"], exist_ok=True)
    os.makedirs(os.path.dirname(adapted["outputs"]["outputFile"]), exist_ok=True)

    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor  # pylint: disable=import-outside-toplevel

    args.json_serialized_invocation_args = json.dumps(adapted)
    kubeflow_v2_run_executor.main((args, beam_args))

    output_file = adapted["outputs"]["outputFile"]
    with open(output_file) as f:
        executor_output = json.load(f)
    with open(output_file, "w") as f:
        json.dump(remote_output(executor_output, remote_of), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
