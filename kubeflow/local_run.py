"""Runs a compiled package on this machine, task by task, as open-source KFP 2.x runs it in a cluster.

For each task, in dependency order, this plays the backend's driver and launcher
(kubeflow/pipelines `backend/src/v2/driver` and `component/launcher_v2.go`):

- **driver:** parameters from constants and pipeline parameters; input artifacts from upstream
  outputs as the metadata client returns them (`name` = an MLMD id, `type: {instanceSchema: ""}`,
  metadata = the custom properties plus `display_name` and `store_session_info`); output artifacts
  at `<root>/<pipeline>/<run id>/<task>/<salt>/<output>` with their spec types, plus the
  `executor-logs` output (`system.Artifact`); `outputFile` at the task root's local path.
- **launcher:** downloads every input artifact from the object store to its local path
  (`/minio/...`, `/s3/...`, `/gcs/...`, under `--work-dir` here), makes the outputs' parent
  folders, runs the container's command with the ExecutorInput for `{{$}}` (its `python` is this
  interpreter), writes the task's output to `executor-logs`, merges the ExecutorOutput into the
  outputs (a URI there replaces the remote one), and uploads each output from its local path.

The object store is real: the store the package's root names (reached as `components.data.storage`
reaches it), or with `--local-store` a stand-in server started here on 127.0.0.1 (moto's S3 for
`minio://` and `s3://` roots, gcp-storage-emulator for `gs://`). KFP's cache is played too: a task whose caching is on is answered from an earlier run in the same
`--work-dir` when its key matches, the key being what the backend hashes (the parameter values,
the input artifacts' ids, the image, the command and arguments). Not played: retries, and
Kubernetes itself (pulling images, resources, secrets).
"""

import contextlib
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

from kubeflow import compile as kfp_compile, entrypoint

EXECUTOR_LOGS = entrypoint.EXECUTOR_LOGS


class PackageError(Exception):
    """The package asks for something the open-source KFP backend (and so this runner) cannot do."""


def task_order(tasks: Dict[str, Any]) -> List[str]:
    """The tasks in an order where each comes after its dependencies (stable, by name)."""
    order, done = [], set()
    pending = dict(sorted(tasks.items()))
    while pending:
        ready = [n for n, t in pending.items() if set(t.get("dependentTasks", [])) <= done]
        if not ready:
            raise PackageError(f"the tasks {sorted(pending)} depend on each other in a cycle")
        for name in ready:
            order.append(name)
            done.add(name)
            del pending[name]
    return order


def _parameter_values(task_name: str, task: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    values = {}
    for name, source in task.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            values[name] = params[source["componentInputParameter"]]
        elif "runtimeValue" in source:
            value = source["runtimeValue"]
            values[name] = value["constant"] if "constant" in value else next(iter(value["constantValue"].values()))
        else:
            raise PackageError(f"task {task_name}: parameter {name} has an unsupported source {sorted(source)}")
    return values


def executor_input(task_name: str, task: Dict[str, Any], component: Dict[str, Any], params: Dict[str, Any],
                   produced: Dict[str, Dict[str, Dict[str, Any]]], task_root: str, local_root: str) -> Dict[str, Any]:
    """The ExecutorInput the open-source driver gives a task (as a JSON-ready dict).

    Args:
      produced: task -> output name -> the published artifact ({id, uri, metadata}).
      task_root: the task's remote root, `<pipeline root>/<pipeline>/<run id>/<task>/<salt>`.
      local_root: where the launcher's local copies live (`/` in a pod).
    """
    artifacts = {}
    for name, source in task.get("inputs", {}).get("artifacts", {}).items():
        upstream = source.get("taskOutputArtifact")
        if upstream is None:
            raise PackageError(f"task {task_name}: input artifact {name} is not a task output ({sorted(source)})")
        published = produced[upstream["producerTask"]][upstream["outputArtifactKey"]]
        artifacts[name] = {"artifacts": [{
            "name": str(published["id"]), "uri": published["uri"], "type": {"instanceSchema": ""},
            "metadata": dict(published["metadata"], display_name=upstream["outputArtifactKey"],
                             store_session_info="{}")}]}
    definitions = dict(component.get("outputDefinitions", {}).get("artifacts", {}))
    definitions[EXECUTOR_LOGS] = {"artifactType": {"schemaTitle": "system.Artifact"}}
    outputs = {name: {"artifacts": [{"name": name, "uri": f"{task_root}/{name}",
                                     "type": definition["artifactType"]}]}
               for name, definition in definitions.items()}
    return {"inputs": {"parameterValues": _parameter_values(task_name, task, params), "artifacts": artifacts},
            "outputs": {"artifacts": outputs,
                        "outputFile": os.path.join(entrypoint.local_path(task_root, local_root), "output_metadata.json")}}


def _command(container: Dict[str, Any], payload: str) -> List[str]:
    command = [sys.executable if c == "python" else c for c in container.get("command", [])]
    return command + [a.replace("{{$}}", payload) for a in container.get("args", [])]


def _download_inputs(executor_in: Dict[str, Any], local_root: str) -> None:
    from components.data import storage  # pylint: disable=import-outside-toplevel
    for artifacts in executor_in["inputs"]["artifacts"].values():
        for artifact in artifacts["artifacts"]:
            storage.download_tree(artifact["uri"], entrypoint.local_path(artifact["uri"], local_root))


def _publish_outputs(executor_in: Dict[str, Any], local_root: str, ids: Iterator[int]) -> Dict[str, Dict[str, Any]]:
    """Merges the ExecutorOutput into the outputs and uploads each from its local path."""
    from components.data import storage  # pylint: disable=import-outside-toplevel
    output_file = executor_in["outputs"]["outputFile"]
    reported = {}
    if os.path.exists(output_file):
        with open(output_file) as f:
            reported = json.load(f).get("artifacts", {})
    published = {}
    for name, artifacts in executor_in["outputs"]["artifacts"].items():
        artifact = dict(artifacts["artifacts"][0], metadata={})
        if name != EXECUTOR_LOGS and reported.get(name, {}).get("artifacts"):
            merged = reported[name]["artifacts"][0]
            artifact["uri"] = merged.get("uri") or artifact["uri"]
            artifact["metadata"] = merged.get("metadata", {})
        local = entrypoint.local_path(artifact["uri"], local_root)
        if local is None:
            raise PackageError(f"output {name}: {artifact['uri']} is not on an object store; the launcher would not upload it")
        if os.path.isdir(local):
            storage.upload_tree(local, artifact["uri"])
        elif os.path.isfile(local):
            with open(local, "rb") as f:
                storage.write_bytes(artifact["uri"], f.read())
        published[name] = {"id": next(ids), "uri": artifact["uri"], "metadata": artifact["metadata"]}
    return published


def run(package: str, overrides: Dict[str, str], work_dir: str, pipeline_root: Optional[str] = None,
        use_local_store: bool = False) -> int:
    """`kubeflow/runner.py run-local`: runs every task; returns the exit code."""
    if not os.path.exists(package):
        print(f"error: {package}: no such package; run `python kubeflow/runner.py compile` first")
        return 1
    spec = kfp_compile.load(package)
    root = pipeline_root or spec.get("defaultPipelineRoot")
    try:
        if not root:
            raise PackageError(f"{package}: the package has no defaultPipelineRoot; pass --pipeline-root")
        kfp_compile.check_root(root)
        params = kfp_compile.parameter_values(spec, overrides)
        tasks = spec["root"]["dag"]["tasks"]
        order = task_order(tasks)
    except (ValueError, PackageError) as e:
        print(f"error: {e}")
        return 1
    from components.data import storage  # pylint: disable=import-outside-toplevel
    with contextlib.ExitStack() as stack:
        if use_local_store:
            endpoint = stack.enter_context(storage.stand_in_store(root))
            print(f"object store: a stand-in server at {endpoint} for {root}")
        return _run_tasks(spec, tasks, order, params, root, work_dir)


def _run_tasks(spec, tasks, order, params, root: str, work_dir: str) -> int:
    from components.data import storage  # pylint: disable=import-outside-toplevel
    if kfp_compile.FINGERPRINT in params and not params[kfp_compile.FINGERPRINT] and params.get("data_root"):
        try:
            params[kfp_compile.FINGERPRINT] = storage.fingerprint(params["data_root"])
        except storage.StorageError as e:
            print(f"error: {e}")
            return 1
    reason = storage.check_reachable(root)
    if reason:
        print(f"error: {reason}")
        return 1
    pipeline_name = spec["pipelineInfo"]["name"]
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir = os.path.abspath(os.path.join(work_dir, run_id))
    local_root = os.path.join(run_dir, "launcher")  # stands for the pod's "/"
    os.makedirs(local_root)
    print(f"run-local: {len(order)} tasks, run {run_id}, pipeline root {root}, parameters {params}")
    print(f"task logs and the launcher's local copies: {run_dir}", flush=True)
    data = f"data_root {params.get('data_root')}"
    produced: Dict[str, Dict[str, Dict[str, Any]]] = {}
    states: Dict[str, Tuple[str, float]] = {}  # task -> (state, seconds), as ML Metadata records them
    cache = Cache(os.path.join(work_dir, "kfp_cache.json"))
    started = time.time()
    env = dict(os.environ, **{entrypoint.LOCAL_ROOT_ENV: local_root})
    for name in order:
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "container" not in executor:
            print(f"error: task {name}: executor {sorted(executor)} is not a container; open-source KFP runs only containers")
            return 1
        task_root = f"{root.rstrip('/')}/{pipeline_name}/{run_id}/{name}/{uuid.uuid4().hex[:8]}"
        try:
            executor_in = executor_input(name, task, component, params, produced, task_root, local_root)
            _download_inputs(executor_in, local_root)
        except (PackageError, storage.StorageError) as e:
            print(f"error: task {name}: {e}")
            return 1
        for artifacts in executor_in["outputs"]["artifacts"].values():
            local = entrypoint.local_path(artifacts["artifacts"][0]["uri"], local_root)
            os.makedirs(os.path.dirname(local), exist_ok=True)
        os.makedirs(os.path.join(run_dir, name))
        with open(os.path.join(run_dir, name, "executor_input.json"), "w") as f:
            json.dump(executor_in, f, indent=1)
        key = cache.key(executor["container"], executor_in) if task.get("cachingOptions", {}).get("enableCache") else None
        if key and cache.get(key):
            produced[name] = cache.get(key)["outputs"]
            states[name] = ("cached", 0.0)
            print(f"[{time.time() - started:5.0f}s] {name} cached (outputs of run {cache.get(key)['run']})", flush=True)
            continue
        print(f"[{time.time() - started:5.0f}s] {name} ...", flush=True)
        task_start = time.time()
        log_path = entrypoint.local_path(executor_in["outputs"]["artifacts"][EXECUTOR_LOGS]["artifacts"][0]["uri"], local_root)
        with open(log_path, "w") as log:
            proc = subprocess.run(_command(executor["container"], json.dumps(executor_in)), stdout=log,
                                  stderr=subprocess.STDOUT, env=env, check=False)
        os.symlink(log_path, os.path.join(run_dir, name, "log.txt"))
        states[name] = ("complete" if proc.returncode == 0 else "failed", time.time() - task_start)
        if proc.returncode != 0:
            print(f"[{time.time() - started:5.0f}s] {name} FAILED (exit {proc.returncode})", flush=True)
            print(_summary(run_id, order, states, produced, run_dir, time.time() - started, root, data))
            print(f"error: task {name} failed (exit {proc.returncode}); its log: {os.path.join(run_dir, name, 'log.txt')}")
            with open(log_path) as log:
                for line in [l.rstrip() for l in log.readlines()[-3:]]:
                    print(f"  {line}")
            return 1
        try:
            produced[name] = _publish_outputs(executor_in, local_root, cache.artifact_ids)
        except (PackageError, storage.StorageError) as e:
            print(f"error: task {name}: {e}")
            return 1
        if key:
            cache.put(key, run_id, produced[name])
        print(f"[{time.time() - started:5.0f}s] {name} done ({time.time() - task_start:.0f} s)", flush=True)
    print(_summary(run_id, order, states, produced, run_dir, time.time() - started, root, data))
    return 0


class Cache:
    """KFP's execution cache, kept in a JSON file: cache key -> the run and its published outputs."""

    def __init__(self, path: str):
        self.path = path
        self.entries: Dict[str, Any] = {}
        if os.path.exists(path):
            with open(path) as f:
                self.entries = json.load(f)
        ids = [a["id"] for e in self.entries.values() for a in e["outputs"].values()]
        self.artifact_ids = itertools.count(max(ids + [1000]) + 1)  # MLMD ids, unique across runs

    @staticmethod
    def key(container: Dict[str, Any], executor_in: Dict[str, Any]) -> str:
        """What the backend's cache key holds (`driver/cache.go`): inputs' ids, parameters, image, command."""
        inputs = {name: [a["name"] for a in artifacts["artifacts"]]
                  for name, artifacts in executor_in["inputs"]["artifacts"].items()}
        material = {"inputArtifactNames": inputs, "inputParameterValues": executor_in["inputs"]["parameterValues"],
                    "outputArtifactsSpec": sorted(executor_in["outputs"]["artifacts"]),
                    "image": container.get("image"), "cmdArgs": container.get("command", []) + container.get("args", [])}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        return self.entries.get(key)

    def put(self, key: str, run_id: str, outputs: Dict[str, Any]) -> None:
        self.entries[key] = {"run": run_id, "outputs": outputs}
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.entries, f, indent=1)
        os.replace(self.path + ".tmp", self.path)


# Outputs the run summary reads, by (task, output): the artifact type name ML Metadata gives them.
_SUMMARY_OUTPUTS = {("DataChecks", "findings"): "components.DataFindings",
                    ("LatestServedModel", "baseline"): "Model",
                    ("Evaluator", "evaluation"): "ModelEvaluation", ("Evaluator", "blessing"): "ModelBlessing",
                    ("Pusher", "pushed_model"): "PushedModel", ("Review", "report"): "components.ReviewReport"}


def _as_mlmd(uri: str, metadata: Dict[str, Any]):
    """An artifact as the backend records it in ML Metadata: its URI and custom properties."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    artifact = metadata_store_pb2.Artifact(uri=uri)
    for key, value in metadata.items():
        if isinstance(value, str):
            artifact.custom_properties[key].string_value = value
        elif isinstance(value, (int, float)) and float(value).is_integer():
            artifact.custom_properties[key].int_value = int(value)
        elif isinstance(value, float):
            artifact.custom_properties[key].double_value = value
    return artifact


def _summary(run_id: str, order: List[str], states: Dict[str, Tuple[str, float]],
             produced: Dict[str, Dict[str, Any]], run_dir: str, seconds: float, root: str, data: str) -> str:
    """The run summary, by the local runner's printer; the files it reads are fetched from the store."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    from components.data import storage  # pylint: disable=import-outside-toplevel
    from components.report import runs  # pylint: disable=import-outside-toplevel

    components = []
    for name in [n for n in order if n in states]:
        outputs = {}
        for (task, output), type_name in _SUMMARY_OUTPUTS.items():
            artifact = produced.get(name, {}).get(output) if task == name else None
            if artifact is None:
                continue
            local = os.path.join(run_dir, "summary", name, output)
            if type_name in ("ModelEvaluation", "components.DataFindings") and not os.path.exists(local):
                storage.download_tree(artifact["uri"], local)
            metadata = dict(artifact["metadata"])
            if type_name == "components.ReviewReport":
                metadata["report_path"] = artifact["uri"].rstrip("/") + "/report.html"
            outputs[type_name] = _as_mlmd(local, metadata)
        state, took = states[name]
        components.append(runs.ComponentRun(name, state, took, outputs, metadata_store_pb2.Execution()))
    report = runs.RunReport(run_id=run_id, components=components, expected=tuple(order))
    runs.add_results(report)
    return runs.render(report, seconds, data, root, metadata="task logs and executor inputs: " + run_dir)
