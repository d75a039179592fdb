"""Runs a compiled package on this machine, task by task, as open-source KFP 2.x runs it in a cluster.

Each task runs as its pod would, from the package alone (`kubeflow.launcher` says what was read
where, kubeflow/pipelines 2.17.0 and 2.5.0):

- **The pod's environment** is the container's `env` from the package, the secrets its platform
  spec maps (`secretAsEnv`; a missing secret or key fails the task as the pod would fail), the
  image's own settings and the launcher's variables (`KFP_POD_NAME`, ...). Nothing of this
  machine's `AWS_*`, `SIGNS_*` or `GOOGLE_*` reaches it, nor its home (`~/.aws`, gcloud's
  credentials): a task's HOME is an empty folder of its own.
- **The driver** gives parameters from constants and pipeline parameters, inputs read back from
  ML Metadata (a real SQLite store in `--work-dir`: empty types and MLMD's value conversions come
  from it), outputs at `<root>/<pipeline>/<run id>/<task>/<salt>/<output>` plus `executor-logs`
  (unless logs are off), and looks the task up in KFP's cache by the key `cache.go` builds.
- **The launcher** plays the release's logs name (2.17: `executor-logs-0`), fills parameter
  defaults, downloads inputs to `/minio/...`, `/s3/...`, `/gcs/...` (under the work dir), runs the
  command, merges the ExecutorOutput (URI, metadata keys, `customPath`), uploads each output under
  the root and records it in ML Metadata. It reaches the store with the launcher config the package
  carries and the keys of the secret it names.
- **The cluster** (`--local-store`, `kubeflow.local_store`): a stand-in object store under the
  release's service name, the secrets KFP's install and the profile controller make, and in a
  multi-user install the namespace's key prefixes. Without it the store and the secrets
  (`--secrets`) are real ones.

`--kfp-release` plays another release than the package's (2.5, 2.17, 2.17-multi-user, ...). Not
played: retries, and Kubernetes' scheduling (images, resources).
"""

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

from common import flags
from common.flags import setting
from components.data import storage, stores
from kubeflow import compile as kfp_compile, entrypoint, launcher, local_store
from kubeflow import deploy

EXECUTOR_LOGS = launcher.EXECUTOR_LOGS


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


def executor_input(task_name: str, task: Dict[str, Any], component: Dict[str, Any], params: Dict[str, Any],
                   produced: Dict[str, Dict[str, Dict[str, Any]]], task_root: str, release: stores.Release,
                   publish_logs: bool = True) -> Dict[str, Any]:
    """The ExecutorInput the driver gives a task (JSON-ready; paths as the pod sees them)."""
    output_file = (os.path.join(entrypoint.local_path(task_root), "output_metadata.json")
                   if release.output_file_in_task_root else launcher.LEGACY_OUTPUT_FILE)
    return {"inputs": {"parameterValues": launcher.task_parameters(task_name, task, params),
                       "artifacts": launcher.input_artifacts(task_name, task, produced)},
            "outputs": {"artifacts": launcher.provision_outputs(component, task_root, publish_logs),
                        "outputFile": output_file}}


def _local(path: str, local_root: str) -> str:
    """A pod path (or a remote URI's launcher copy) under the folder standing for the pod's "/"."""
    mapped = entrypoint.local_path(path, local_root)
    return mapped if mapped is not None else os.path.join(local_root, path.lstrip("/"))


@dataclasses.dataclass
class LocalCluster:
    """What run-local holds of the cluster: the launcher config, the secrets, the network and ML Metadata."""

    launcher: stores.LauncherConfig
    release: stores.Release
    root: str
    secrets: Dict[str, Dict[str, str]]
    network: Dict[str, str]
    mlmd: Any
    cache_path: str

    @contextlib.contextmanager
    def as_launcher(self):
        """This process reaches the store as the launcher does: the package's config, the secret it names."""
        session = self.launcher.session(self.root)
        settings = dataclasses.replace(stores.StoreSettings.from_environment(self.network), launcher=self.launcher)
        if session.secret_name:
            values = self.secrets.get(session.secret_name)
            if values is None:
                raise local_store.StoreError(f"the launcher's secret {session.secret_name!r} not found "
                                             f"(failed to retrieve credentials for bucket {stores.split(self.root)[0]})")
            settings = dataclasses.replace(settings, access_key=values.get(session.access_key_key, ""),
                                           secret_key=values.get(session.secret_key_key, ""))
        with storage.configured(settings):
            yield


@dataclasses.dataclass(frozen=True)
class RunLocalConfig:
    """What `run-local` needs; `kubeflow/runner.py run-local` makes its flags from these fields."""

    package: str = setting(None, "the compiled pipeline.yaml", flag="package")
    param: Tuple[Tuple[str, str], ...] = setting((), "NAME=VALUE, repeatable", parse=flags.key_value(flag_name="--param"),
                                                 action="append")
    work_dir: str = setting("kfp_local", "where task logs, executor inputs and the launcher's local copies go")
    pipeline_root: Optional[str] = setting(None, "the run's pipeline root (default: the package's)")
    local_store: bool = setting(False, "start a stand-in object store on 127.0.0.1 for the root and the release's "
                                       "store service (S3 for minio:// and s3://, GCS for gs://), with the secrets a "
                                       "cluster would hold", action="store_true")
    kfp_release: Optional[str] = setting(None, "the backend release to play (default: the package's); "
                                               "2.17-multi-user needs the package's --namespace and plays its key "
                                               "prefixes", choices=tuple(sorted(stores.RELEASES)))
    data: Optional[str] = setting(None, "with --local-store: upload DIR to the run's data_root first, as you would "
                                        "to the cluster's store", metavar="DIR")
    publish_logs: bool = setting(True, "play a backend whose admin turned publishing logs off (no executor-logs "
                                       "output)", flag="--no-publish-logs", action="store_false")
    secrets: Optional[str] = setting(None, "Kubernetes Secrets (YAML, as kubectl get secret -o yaml) standing in for "
                                           "the cluster's; with --local-store the stand-in's own are used", metavar="FILE")


def run(config: RunLocalConfig) -> int:
    """`kubeflow/runner.py run-local`: runs every task; returns the exit code."""
    package, overrides, work_dir, pipeline_root = config.package, dict(config.param), config.work_dir, config.pipeline_root
    use_local_store, kfp_release, secrets_file, data = config.local_store, config.kfp_release, config.secrets, config.data
    publish_logs = config.publish_logs
    if not os.path.exists(package):
        print(f"error: {package}: no such package; run `python kubeflow/runner.py compile` first")
        return 1
    try:
        spec = kfp_compile.load(package)
    except kfp_compile.CompileError as e:
        print(f"error: {e}")
        return 2
    root = pipeline_root or spec.get("defaultPipelineRoot")
    try:
        config = deploy.package_launcher(spec) or stores.LauncherConfig()
        if kfp_release:
            config = dataclasses.replace(config, release=kfp_release)
        release = stores.release(config.release)
        if not root:
            raise PackageError(f"{package}: the package has no defaultPipelineRoot; pass --pipeline-root")
        kfp_compile.check_root(root)
        if release.multi_user and not config.namespace:
            raise PackageError(f"--kfp-release {release.name}: the package was compiled without --namespace")
        if config.namespace:
            stores.check_namespace_root(root, config.namespace)
        params = kfp_compile.parameter_values(spec, overrides)
        order = task_order(spec["root"]["dag"]["tasks"])
        if data and not use_local_store:
            raise PackageError("--data uploads into the stand-in store; it needs --local-store")
        secrets = local_store.load_secrets(secrets_file) if secrets_file else {}
    except (ValueError, PackageError, local_store.StoreError) as e:
        print(f"error: {e}")
        return 1
    os.makedirs(work_dir, exist_ok=True)
    with contextlib.ExitStack() as stack:
        network: Dict[str, str] = {}
        try:
            if use_local_store:
                cluster_store = stack.enter_context(local_store.ClusterStore(config, root, work_dir).running())
                secrets = dict(cluster_store.secrets, **secrets)
                network = cluster_store.network_env()
                where = ", ".join(f"{k} -> {v}" for k, v in cluster_store.addresses.items()) or cluster_store.url
                print(f"object store: a stand-in at {where}, kept in {cluster_store.saved}")
                if data:
                    with cluster_store.as_admin():
                        storage.upload_tree(data, params["data_root"])
                    print(f"uploaded {data} to {params['data_root']}")
            cluster = LocalCluster(config, release, root, secrets, network,
                              launcher.open_metadata(os.path.join(os.path.abspath(work_dir), "mlmd.sqlite")),
                              os.path.join(work_dir, "kfp_cache.json"))
            return _run_tasks(spec, order, params, cluster, work_dir, publish_logs)
        except (local_store.StoreError, storage.StorageError, stores.StoreConfigError) as e:
            print(f"error: {e}")
            return 1


def _run_tasks(spec, order, params, cluster: LocalCluster, work_dir: str, publish_logs: bool) -> int:
    tasks = spec["root"]["dag"]["tasks"]
    with cluster.as_launcher():
        if kfp_compile.FINGERPRINT in params and not params[kfp_compile.FINGERPRINT] and params.get("data_root"):
            params[kfp_compile.FINGERPRINT] = storage.fingerprint(params["data_root"])
        reason = storage.check_reachable(cluster.root)
    if reason:
        print(f"error: {reason}")
        return 1
    pipeline_name = spec["pipelineInfo"]["name"]
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir = os.path.abspath(os.path.join(work_dir, run_id))
    local_root = os.path.join(run_dir, "launcher")  # stands for the pod's "/"
    os.makedirs(local_root)
    print(f"run-local: {len(order)} tasks, run {run_id}, KFP {cluster.release.name}, pipeline root {cluster.root}, "
          f"parameters {params}")
    print(f"task logs and the launcher's local copies: {run_dir}", flush=True)
    data = f"data_root {params.get('data_root')}"
    produced: Dict[str, Dict[str, Dict[str, Any]]] = {}
    states: Dict[str, Tuple[str, float]] = {}  # task -> (state, seconds), as ML Metadata records them
    cache = _load_cache(cluster.cache_path)
    platform = spec.get(kfp_compile.PLATFORM_KEY, {}).get("platforms", {}).get("kubernetes", {}) \
        .get("deploymentSpec", {}).get("executors", {})
    started = time.time()
    for name in order:
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "container" not in executor:
            print(f"error: task {name}: executor {sorted(executor)} is not a container; open-source KFP runs only containers")
            return 1
        task_root = f"{cluster.root.rstrip('/')}/{pipeline_name}/{run_id}/{name}/{uuid.uuid4().hex[:8]}"
        try:
            executor_in = executor_input(name, task, component, params, produced, task_root, cluster.release, publish_logs)
            key = launcher.cache_key(task, component, executor["container"], executor_in) \
                if task.get("cachingOptions", {}).get("enableCache") else None
        except launcher.LaunchError as e:
            print(f"error: {e}")
            return 1
        if key and key in cache:
            produced[name] = launcher.read_outputs(cluster.mlmd, cache[key])
            launcher.record_execution(cluster.mlmd, run_id, name, "cached", {"cached_execution_id": str(cache[key])})
            states[name] = ("cached", 0.0)
            print(f"[{time.time() - started:5.0f}s] {name} cached (execution {cache[key]})", flush=True)
            continue
        os.makedirs(os.path.join(run_dir, name))
        print(f"[{time.time() - started:5.0f}s] {name} ...", flush=True)
        task_start = time.time()
        try:
            outputs, code, log_path = _launch(name, component, executor, platform.get(component["executorLabel"], {}),
                                              executor_in, cluster, local_root, os.path.join(run_dir, name))
        except (launcher.LaunchError, local_store.StoreError, storage.StorageError) as e:
            print(f"error: task {name}: {e}")
            return 1
        states[name] = ("complete" if code == 0 else "failed", time.time() - task_start)
        if code != 0:
            launcher.record_execution(cluster.mlmd, run_id, name, "failed")
            print(f"[{time.time() - started:5.0f}s] {name} FAILED (exit {code})", flush=True)
            with cluster.as_launcher():
                print(_summary(run_id, order, states, produced, run_dir, time.time() - started, cluster.root, data))
            print(f"error: task {name} failed (exit {code}); its log: {log_path}")
            with open(log_path, errors="replace") as log:
                for line in [l.rstrip() for l in log.readlines()[-3:]]:
                    print(f"  {line}")
            return 1
        execution_id = launcher.record_execution(cluster.mlmd, run_id, name, "complete")
        try:
            launcher.record_outputs(cluster.mlmd, execution_id, outputs,
                                    launcher.session_info_json(cluster.launcher.session(cluster.root)))
        except launcher.LaunchError as e:
            print(f"error: task {name}: {e}")
            return 1
        produced[name] = launcher.read_outputs(cluster.mlmd, execution_id)
        if key:
            cache[key] = execution_id
            _save_cache(cluster.cache_path, cache)
        print(f"[{time.time() - started:5.0f}s] {name} done ({time.time() - task_start:.0f} s)", flush=True)
    with cluster.as_launcher():
        print(_summary(run_id, order, states, produced, run_dir, time.time() - started, cluster.root, data))
    return 0


def _launch(name: str, component, executor, platform, executor_in, cluster: LocalCluster, local_root: str,
            task_dir: str) -> Tuple[Dict[str, Dict[str, Any]], int, str]:
    """The launcher's part: returns (the outputs to record, the exit code, the log's path)."""
    container = executor["container"]
    env = local_store.pod_env(container, platform, cluster.secrets, name, cluster.network, local_root, cluster.release)
    if cluster.release.retry_qualified_logs:
        executor_in = dict(executor_in, outputs=dict(executor_in["outputs"],
                                                     artifacts=launcher.qualify_logs(executor_in["outputs"]["artifacts"])))
    with open(os.path.join(task_dir, "executor_input.json"), "w") as f:
        json.dump(executor_in, f, indent=1)
    payload = json.dumps(launcher.add_default_params(executor_in, component))
    with cluster.as_launcher():
        for listed in executor_in["inputs"]["artifacts"].values():
            for artifact in listed["artifacts"]:
                storage.download_tree(artifact["uri"], _local(artifact["uri"], local_root))
    for listed in executor_in["outputs"]["artifacts"].values():
        os.makedirs(os.path.dirname(_local(listed["artifacts"][0]["uri"], local_root)), exist_ok=True)
    logs = executor_in["outputs"]["artifacts"].get(EXECUTOR_LOGS)
    log_path = _local(logs["artifacts"][0]["uri"], local_root) if logs else os.path.join(task_dir, "log.txt")
    command = [sys.executable if c == "python" else c for c in container.get("command", [])]
    command += [a.replace("{{$}}", payload) for a in container.get("args", [])]
    with open(log_path, "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=task_dir, check=False).returncode
    if logs:
        os.symlink(log_path, os.path.join(task_dir, "log.txt"))
    if code != 0:
        return {}, code, os.path.join(task_dir, "log.txt")
    output_file = _local(executor_in["outputs"]["outputFile"], local_root)
    reported = {}
    if os.path.exists(output_file):
        with open(output_file) as f:
            reported = json.load(f).get("artifacts", {})
    outputs = {}
    with cluster.as_launcher():
        for out_name, listed in executor_in["outputs"]["artifacts"].items():
            artifact = listed["artifacts"][0]
            if out_name != EXECUTOR_LOGS and reported.get(out_name, {}).get("artifacts"):
                artifact = launcher.merge_output(reported[out_name]["artifacts"][0], artifact, cluster.release.custom_path)
            local = _local(artifact["customPath"], local_root) if artifact.get("customPath") else _local(artifact["uri"], local_root)
            launcher.upload_key(artifact["uri"], cluster.root)
            if os.path.isdir(local):
                storage.upload_tree(local, artifact["uri"])
            elif os.path.isfile(local):
                with open(local, "rb") as f:
                    storage.write_bytes(artifact["uri"], f.read())
            outputs[out_name] = artifact
    return outputs, 0, os.path.join(task_dir, "log.txt")


def _load_cache(path: str) -> Dict[str, int]:
    """KFP's cache table (the API server's tasks): fingerprint -> the MLMD execution that made the outputs."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _save_cache(path: str, cache: Dict[str, int]) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(cache, f, indent=1)
    os.replace(path + ".tmp", path)


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
    from components.report import run_summary  # pylint: disable=import-outside-toplevel

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
        components.append(run_summary.ComponentRun(name, state, took, outputs, metadata_store_pb2.Execution()))
    report = run_summary.RunReport(run_id=run_id, components=components, expected=tuple(order))
    run_summary.add_results(report)
    return run_summary.summary_text(report, seconds, data, root, metadata="task logs and executor inputs: " + run_dir)
