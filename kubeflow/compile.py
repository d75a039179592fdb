"""Compiles the SIGNS pipeline into a KFP 2.x PipelineSpec (pipeline.yaml) for open-source Kubeflow."""

import copy
import dataclasses
import os
import re
from typing import Any, Dict, Optional, Tuple

import yaml

from components.data import storage, stores
from components.push import version_dirs
from pipeline import data_source, options
from pipeline.options import PipelineConfig

# Pipeline roots the open-source backend takes (`backend/src/v2/objectstore/config.go`), less
# mem://, which keeps nothing a later run or a serving cluster could read.
ROOT_SCHEMES = ("gs://", "s3://", "minio://")
DEFAULT_PIPELINE_ROOT = stores.BACKEND_DEFAULT_ROOT  # where the backend puts a run given no root
ENTRYPOINT = ["python", "-m", "kubeflow.entrypoint"]
FINGERPRINT = "data_fingerprint"  # ExampleGen's cache key: what is under data_root (see submit)



# The input splits of the sources a compiled pipeline can read (the data root is only known at run
# time, so the kind is chosen at compile time), the same as the local runner's.
INPUT_SPLITS = {
    "h5_pair": data_source.H5_PAIR_SPLITS,
    "image_folder": data_source.IMAGE_FOLDER_SPLITS,
}


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    """What `compile` needs; the flags of `kubeflow/runner.py compile` fill it.

    `pipeline` holds the settings both runners share (`pipeline.options`): its runtime fields
    become the package's runtime parameters, with its values as their defaults; its compile
    fields are fixed in the package. The other fields are Kubeflow's own.
    """

    pipeline: PipelineConfig = PipelineConfig()
    output: str = "pipeline.yaml"  # the PipelineSpec to write
    image: str = "signs-pipeline:0.1.0"  # container image every task runs
    pipeline_root: str = ""  # gs://, s3:// or minio://; "" = the namespace's, the ConfigMap's, or KFP's default
    data_root: str = ""  # default of the data_root parameter; "" = <pipeline-root>/data
    source_kind: str = "h5_pair"  # h5_pair (train_signs.h5 + test_signs.h5) or image_folder
    gpus: int = 1  # accelerators for the Trainer; 0 runs it on CPU
    accelerator: str = "nvidia.com/gpu"  # the Kubernetes resource name of the accelerator
    cpu: str = "2"  # CPU request of each task
    memory: str = "8G"  # memory request of each task
    trainer_cpu: str = "8"
    trainer_memory: str = "32G"
    # Where the Trainer's pod may run: node labels it needs (`nodeSelector`), and the taints it
    # tolerates as (key, operator, value, effect): a GPU pool is often tainted, and a pod that does
    # not tolerate the taint stays Pending. kfp-kubernetes' KubernetesExecutorConfig fields 4 and 12.
    trainer_node_selector: Tuple[Tuple[str, str], ...] = ()
    trainer_tolerations: Tuple[Tuple[str, str, str, str], ...] = ()
    # The cluster's store settings: the target KFP release's defaults and the `kfp-launcher`
    # ConfigMap's providers (components.data.stores); every task resolves stores from it.
    launcher: stores.LauncherConfig = stores.LauncherConfig()
    namespace: str = ""  # a multi-user profile namespace: root and keys under private-artifacts/<ns>/
    kserve: bool = True  # the Pusher writes each pushed version's KServe InferenceService beside it
    kserve_name: str = "signs"  # the InferenceService's name (and TF Serving's model name)
    kserve_namespace: Optional[str] = None  # None: the namespace `kubectl apply` / `deploy` uses
    kserve_service_account: Optional[str] = None  # None: signs-kserve for minio:// roots, else the default

    @property
    def root(self) -> str:
        """The pipeline root: the flag, else the namespace's, else the ConfigMap's, else the backend's."""
        if self.pipeline_root:
            return self.pipeline_root
        if self.namespace:
            return stores.namespace_root(self.namespace)
        return self.launcher.default_pipeline_root or DEFAULT_PIPELINE_ROOT

    @property
    def serving_dir(self) -> str:
        return version_dirs.default_dir(self.root)

    @property
    def default_data_root(self) -> str:
        return self.data_root or storage.join(self.root, "data")


class CompileError(ValueError):
    """A setting the open-source KFP backend would refuse; one line."""


def check_root(root: str) -> None:
    """Raises CompileError unless the backend takes `root` and it can hold the serving dir."""
    if root.startswith("mem://"):
        raise CompileError(f"--pipeline-root {root}: mem:// keeps nothing after the run; use gs://, s3:// or minio://")
    if not root.startswith(ROOT_SCHEMES) or len(root.split("://", 1)[1].strip("/")) == 0:
        raise CompileError(f"--pipeline-root {root!r}: the KFP backend takes only gs://BUCKET/..., "
                           f"s3://BUCKET/... or minio://BUCKET/... roots")


# Kubernetes names (apimachinery validation): namespaces are RFC 1123 labels, Secrets and
# ServiceAccounts RFC 1123 subdomains, and KServe takes an InferenceService name that is an RFC
# 1035 label (it becomes a Service's name). Bucket names as S3 takes them (GCS also takes "_").
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_1123_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_BUCKET = {"gs": re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"), "s3": re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")}
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}")  # a reference: no spaces, quotes or newlines
# Kubernetes label keys ([DNS subdomain prefix/]name) and values (validation.IsQualifiedName, IsValidLabelValue).
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_RESOURCE_NAME = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def check_location(location: str, what: str) -> None:
    """Raises CompileError for a store location no store takes: a bucket name outside the naming
    rules, or a `.` or `..` segment (which would also lead the launcher's local copy of an
    artifact out of its folder)."""
    scheme, _, rest = location.partition("://")
    bucket, _, key = rest.partition("/")
    if not _BUCKET["gs" if scheme == "gs" else "s3"].fullmatch(bucket):
        raise CompileError(f"{what} {location!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, "
                           f"digits, dots and hyphens)")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise CompileError(f"{what} {location!r}: '.' and '..' are not allowed in an object-store path")


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")  # the numbers of the quantities taken here: no sign, exponent, inf


def _number(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"not a plain decimal number: {text!r}")
    return float(text)


def cpu_cores(text: str) -> float:
    """A Kubernetes CPU quantity ('2', '0.5', '500m') in cores."""
    return _number(text[:-1]) / 1000 if text.endswith("m") else _number(text)


def _check_resources(config: CompileConfig) -> None:
    for flag, value in (("--cpu", config.cpu), ("--trainer-cpu", config.trainer_cpu)):
        try:
            cores = cpu_cores(value)
        except ValueError:
            cores = float("nan")
        if not 0 < cores <= 1024:  # NaN too
            raise CompileError(f"{flag} {value!r}: expected CPU cores in (0, 1024], e.g. 2, 0.5 or 500m")
    for flag, value in (("--memory", config.memory), ("--trainer-memory", config.trainer_memory)):
        try:
            gigabytes = _gigabytes(value)
        except ValueError:
            gigabytes = float("nan")
        if not 0 < gigabytes <= 65536:
            raise CompileError(f"{flag} {value!r}: expected a memory size up to 64Ti, e.g. 8G, 512Mi")
    if not 0 <= config.gpus <= 64:
        raise CompileError(f"--gpus {config.gpus}: expected 0 (CPU only) to 64")
    for key, value in config.trainer_node_selector:
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise CompileError(f"--trainer-node-selector {key}={value}: not a Kubernetes label (KEY=VALUE: a "
                               f"[prefix/]name and a value of letters, digits, '-', '_', '.', at most 63 each)")
    for key, operator, value, effect in config.trainer_tolerations:
        if (key and not _LABEL_KEY.fullmatch(key)) or not _LABEL_VALUE.fullmatch(value) \
                or effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute") or operator not in ("Equal", "Exists"):
            raise CompileError(f"--trainer-toleration {key}={value}:{effect}: expected KEY[=VALUE][:EFFECT], EFFECT one "
                               f"of NoSchedule, PreferNoSchedule, NoExecute")
    if not _RESOURCE_NAME.fullmatch(config.accelerator):
        raise CompileError(f"--accelerator {config.accelerator!r}: not a Kubernetes resource name (e.g. nvidia.com/gpu)")


def _check_names(config: CompileConfig) -> None:
    if not _IMAGE.fullmatch(config.image):
        raise CompileError(f"--image {config.image!r}: not an image reference (REGISTRY/NAME:TAG, no spaces or newlines)")
    for flag, value, pattern, kind in (
            ("--namespace", config.namespace, _DNS_1123_LABEL, "an RFC 1123 label"),
            ("--kserve-namespace", config.kserve_namespace, _DNS_1123_LABEL, "an RFC 1123 label"),
            ("--kserve-name", config.kserve_name, _DNS_1035_LABEL, "an RFC 1035 label (KServe's rule)"),
            ("--kserve-service-account", config.kserve_service_account, _DNS_1123_SUBDOMAIN, "an RFC 1123 subdomain")):
        if value and not pattern.fullmatch(value):
            raise CompileError(f"{flag} {value!r}: not a Kubernetes name: {kind}, lowercase letters, digits and "
                               f"'-', at most 63 characters")
    if os.path.isdir(config.output):
        raise CompileError(f"--output {config.output}: a directory; name the file, e.g. "
                           f"{os.path.join(config.output, 'pipeline.yaml')}")


def check_config(config: CompileConfig) -> None:
    """Raises CompileError for a setting the cluster would refuse, in one line: the root, the
    namespace, the launcher config, names, images and resources."""
    check_root(config.root)
    for location, what in ((config.root, "--pipeline-root"), (config.default_data_root, "--data-root")):
        check_location(location, what)
    _check_names(config)
    _check_resources(config)
    try:
        kfp_release = stores.release(config.launcher.release)
        if kfp_release.multi_user and not config.namespace:
            raise CompileError(f"--kfp-release {kfp_release.name}: a multi-user install needs --namespace (the profile's)")
        if config.namespace:
            for location in (config.root, config.default_data_root):
                stores.check_namespace_root(location, config.namespace)
        providers = config.launcher.providers
        kind = config.root.split("://", 1)[0]
        if providers and kind not in providers:
            raise CompileError(f"--launcher-config: providers has no {kind} provider for the root {config.root} "
                               f"(it has {', '.join(sorted(providers))})")
        for location in (config.root, config.default_data_root):
            if "://" in location:
                config.launcher.session(location).endpoint_url()  # refuses user info, or no host[:port]
        for secret, _ in config.launcher.secrets([config.root, config.default_data_root]):  # refuses an invalid provider
            if not _DNS_1123_SUBDOMAIN.fullmatch(secret):
                raise CompileError(f"--launcher-config: secret {secret!r} is not a Kubernetes Secret name")
    except stores.StoreConfigError as e:
        raise CompileError(str(e)) from None


def _resources(cpu: str, memory: str, gpus: int = 0, accelerator: str = ""):
    from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=import-outside-toplevel

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    resources = spec(cpu_request=cpu_cores(cpu), cpu_limit=cpu_cores(cpu),
                     memory_request=_gigabytes(memory), memory_limit=_gigabytes(memory))
    if gpus:
        resources.accelerator.CopyFrom(spec.AcceleratorConfig(type=accelerator, count=gpus))
    return resources


def _gigabytes(text: str) -> float:
    units = {"G": 1.0, "Gi": 1.073741824, "M": 1e-3, "Mi": 1.048576e-3}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return _number(text[:-len(suffix)]) * units[suffix]
    raise ValueError(f"no unit: {text!r}")


def build(config: CompileConfig) -> Dict[str, Any]:
    """Returns the PipelineSpec (as a dict) of the pipeline with Kubeflow's settings."""
    from tfx.orchestration import data_types  # pylint: disable=import-outside-toplevel
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=import-outside-toplevel

    from pipeline.definition import Placement, create_pipeline  # pylint: disable=import-outside-toplevel

    check_config(config)
    shared = config.pipeline
    defaults = {"data_root": config.default_data_root, FINGERPRINT: "",
                **options.runtime_parameters(shared)}
    params = {name: data_types.RuntimeParameter(name=name, ptype=type(value), default=value)
              for name, value in defaults.items() if name != FINGERPRINT}
    data_root = params.pop("data_root")
    tfx_pipeline = create_pipeline(shared, Placement(
        pipeline_root=config.root, data_root=data_root, input_splits=INPUT_SPLITS[config.source_kind],
        source_kind=config.source_kind, serving_dir=config.serving_dir,
        kserve={"name": config.kserve_name, "namespace": config.kserve_namespace,
                "service_account": config.kserve_service_account} if config.kserve else None,
        beam_pipeline_args=options.beam_pipeline_args(shared.beam_args, local=False), enable_cache=True), params)
    for component in tfx_pipeline.components:
        if component.id == "Trainer":
            component.with_platform_config(_resources(config.trainer_cpu, config.trainer_memory,
                                                      config.gpus, config.accelerator))
        else:
            component.with_platform_config(_resources(config.cpu, config.memory))
    # Schema 2.1 (parameterType, defaultValue) is what the open-source KFP 2.x backend reads.
    runner_config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        default_image=config.image, use_pipeline_spec_2_1=True)
    job = kubeflow_v2_dag_runner.KubeflowV2DagRunner(runner_config).run(tfx_pipeline, write_out=False)
    spec = job["pipelineSpec"]
    spec["root"]["inputDefinitions"]["parameters"][FINGERPRINT] = {"parameterType": "STRING"}
    for name, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        definition["defaultValue"] = defaults[name]  # the PipelineJob's runtimeConfig is not submitted
        definition["isOptional"] = True
    spec["defaultPipelineRoot"] = config.root
    return _for_open_source_kfp(spec, config)


def _for_open_source_kfp(spec: Dict[str, Any], config: CompileConfig) -> Dict[str, Any]:
    """Adapts TFX's (Vertex-minded) spec to what the open-source KFP backend runs.

    - Every task runs `kubeflow.entrypoint`, which takes the executor input the open-source
      launcher really sends (see that module), instead of TFX's own entrypoint.
    - FileBasedExampleGen's driver is a `lifecycle.preCacheCheck` hook, which open-source KFP
      never runs; our ExampleGen executor needs no driver, so the hook is dropped. TFX does not
      copy its platform config either: every task without resources gets the default ones.
    - ExampleGen takes the `data_fingerprint` parameter, so KFP's cache key (the parameter values)
      changes when the files under data_root do.
    - LatestServedModel reads the serving directory, which changes between runs with the same
      inputs: it must never be answered from KFP's cache.
    - The launcher config (KFP release, the ConfigMap's providers) goes into every task's
      environment, so the storage layer in the pod reaches each store as the launcher does; the
      credentials its sessions name come from Kubernetes secrets (`secretAsEnv` in the platform
      spec, the package's second YAML document).
    """
    env = [{"name": stores.ENV_VAR, "value": dataclasses.replace(config.launcher, namespace=config.namespace).to_json()}]
    ours = {e["name"] for e in env}
    default_resources = _resources(config.cpu, config.memory)
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is None:
            continue
        container.pop("lifecycle", None)
        container["command"] = list(ENTRYPOINT)
        container.setdefault("resources", json_format.MessageToDict(default_resources))
        container["env"] = [e for e in container.get("env", []) if e["name"] not in ours] + env
    tasks = spec["root"]["dag"]["tasks"]
    tasks["LatestServedModel"]["cachingOptions"] = {"enableCache": False}
    tasks["ExampleGen"]["inputs"]["parameters"][FINGERPRINT] = {"componentInputParameter": FINGERPRINT}
    example_gen = spec["components"][tasks["ExampleGen"]["componentRef"]["name"]]
    example_gen["inputDefinitions"]["parameters"][FINGERPRINT] = {"parameterType": "STRING"}
    secrets = config.launcher.secrets([config.root, config.default_data_root])
    executors: Dict[str, Dict[str, Any]] = {}
    if secrets:
        secret = {"secretAsEnv": [{"secretName": name, "keyToEnv": [
            {"secretKey": key, "envVar": var} for key, var in sorted(keys.items())]} for name, keys in secrets]}
        executors = {label: copy.deepcopy(secret) for label, e in spec["deploymentSpec"]["executors"].items()
                     if "container" in e}
    trainer = spec["components"][tasks["Trainer"]["componentRef"]["name"]]["executorLabel"]
    if config.trainer_node_selector:
        executors.setdefault(trainer, {})["nodeSelector"] = {"labels": dict(config.trainer_node_selector)}
    if config.trainer_tolerations:
        executors.setdefault(trainer, {})["tolerations"] = [
            {k: v for k, v in zip(("key", "operator", "value", "effect"), t) if v} for t in config.trainer_tolerations]
    if executors:
        spec[PLATFORM_KEY] = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
    return spec


PLATFORM_KEY = "_platform_spec"  # held beside the PipelineSpec in memory; its own YAML document on disk


def write(spec: Dict[str, Any], path: str) -> str:
    """Writes the package `kfp.Client` accepts: the PipelineSpec, then its platform spec, if any."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pipeline_spec = {k: v for k, v in spec.items() if k != PLATFORM_KEY}
    documents = [pipeline_spec] + ([spec[PLATFORM_KEY]] if PLATFORM_KEY in spec else [])
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "w") as f:
            f.write("# signs-pipeline: compiled by `python kubeflow/runner.py compile`\n")
            yaml.safe_dump_all(documents, f, sort_keys=True)
        os.replace(partial, path)  # whole or not at all: an interrupted compile leaves no truncated package
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def load(path: str) -> Dict[str, Any]:
    """Reads a compiled package (the PipelineSpec YAML, and its platform spec if it has one)."""
    try:
        with open(path, encoding="utf-8") as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise CompileError(f"{path}: not a compiled pipeline (YAML): {str(e).splitlines()[0]}") from None
    except IsADirectoryError:
        raise CompileError(f"{path}: a directory, not a compiled pipeline") from None
    if not documents or not isinstance(documents[0], dict) or "root" not in documents[0]:
        raise CompileError(f"{path}: not a compiled pipeline (no PipelineSpec `root`)")
    spec = documents[0]
    if len(documents) > 1:
        spec[PLATFORM_KEY] = documents[1]
    return spec


_CASTS = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "STRING": str, "BOOLEAN": lambda v: v.lower() in ("1", "true", "yes")}


def parameter_values(spec: Dict[str, Any], overrides: Dict[str, str]) -> Dict[str, Any]:
    """The package's runtime parameters: defaults, then `overrides` (strings, cast to each type).

    Raises:
      ValueError: an override names no parameter of the package, or does not parse as its type.
    """
    definitions = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    values = {name: d.get("defaultValue") for name, d in definitions.items()}
    for name, text in overrides.items():
        if name not in definitions:
            raise ValueError(f"--param {name}: the package has no such parameter; it has {sorted(definitions)}")
        kind = definitions[name].get("parameterType", "STRING")
        try:
            values[name] = _CASTS.get(kind, str)(text)
        except ValueError as e:
            raise ValueError(f"--param {name}={text}: not a {kind.lower()}") from e
        problem = options.check_value(name, text)  # what the local runner refuses, the cluster must not run
        if problem:
            raise ValueError(f"--param {name}={text}: {problem}")
    return values
