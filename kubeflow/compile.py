"""Compiles the SIGNS pipeline into a KFP 2.x PipelineSpec (pipeline.yaml) for open-source Kubeflow."""

import copy
import dataclasses
import os
from importlib import metadata
from typing import Any, Dict, Optional, Tuple

import yaml

from common import flags
from common.flags import setting
from components.data import stores
from components.data.layout import PipelineRoot
from kubeflow import kube_checks
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


def package_version() -> str:
    try:
        return metadata.version("signs-pipeline")
    except metadata.PackageNotFoundError:
        return "dev"


def _toleration(text: str) -> Tuple[str, str, str, str]:
    """KEY[=VALUE][:EFFECT] as (key, operator, value, effect): Equal with a value, Exists without."""
    rest, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, sep, value = rest.partition("=")
    return key, "Equal" if sep else "Exists", value, effect


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    """What `compile` needs; `kubeflow/runner.py compile` makes its flags from these fields.

    `pipeline` holds the settings both runners share (`pipeline.options`): its runtime fields
    become the package's runtime parameters, with its values as their defaults; its compile
    fields are fixed in the package. Its paths are this config's: the root is `root`, the
    serving dir is under it. The other fields are Kubeflow's own.
    """

    pipeline: PipelineConfig = PipelineConfig()
    output: str = setting("pipeline.yaml", "the package to write")
    image: str = setting(f"signs-pipeline:{package_version()}", "the image every task runs (kubeflow/Dockerfile)")
    pipeline_root: str = setting(
        "", "where every artifact goes, and under it data/, serving_model/ and checkpoints/: gs://, s3:// or "
            "minio:// (default: the namespace's private-artifacts/<ns>/v2/artifacts with --namespace, else "
            "--launcher-config's defaultPipelineRoot, else KFP's minio://mlpipeline/v2/artifacts)")
    kfp_release: str = setting(stores.DEFAULT_RELEASE, "the KFP release the cluster runs: its launcher's store "
                                                       "defaults (2.16 and newer: seaweedfs.kubeflow:9000; older: "
                                                       "minio-service.kubeflow:9000)", choices=tuple(sorted(stores.RELEASES)))
    launcher_config: Optional[str] = setting(
        None, "the cluster's kfp-launcher ConfigMap (kubectl -n NS get cm kfp-launcher -o yaml): its providers "
              "and defaultPipelineRoot are used as the launcher uses them", metavar="FILE")
    namespace: str = setting("", "a multi-user install's profile namespace: the root goes under "
                                 "private-artifacts/<ns>/, where its keys may write; a root outside that is refused")
    data_root: str = setting("", "default of the data_root runtime parameter (default: <pipeline-root>/data)")
    source_kind: str = setting("h5_pair", "what data_root holds: a SIGNS h5 pair, or class sub-folders of images",
                               choices=("h5_pair", "image_folder"))
    gpus: int = setting(1, "accelerators for the Trainer (0: CPU only)")
    accelerator: str = setting("nvidia.com/gpu", "Kubernetes resource name of the accelerator")
    cpu: str = setting("2", "CPU request of each task")
    memory: str = setting("8G", "memory request of each task (G, Gi, M, Mi)")
    trainer_cpu: str = setting("8", "CPU request of the Trainer")
    trainer_memory: str = setting("32G", "memory request of the Trainer")
    # Where the Trainer's pod may run: node labels it needs (`nodeSelector`), and the taints it
    # tolerates as (key, operator, value, effect): a GPU pool is often tainted, and a pod that does
    # not tolerate the taint stays Pending. kfp-kubernetes' KubernetesExecutorConfig fields 4 and 12.
    trainer_node_selector: Tuple[Tuple[str, str], ...] = setting(
        (), "a node label the Trainer's pod needs (nodeSelector), repeatable, e.g. "
            "cloud.google.com/gke-accelerator=nvidia-l4", parse=flags.key_value("LABEL=VALUE"), action="append",
        metavar="LABEL=VALUE")
    trainer_tolerations: Tuple[Tuple[str, str, str, str], ...] = setting(
        (), "a taint the Trainer's pod tolerates, repeatable, e.g. nvidia.com/gpu=present:NoSchedule "
            "(a tainted GPU pool leaves it Pending otherwise); no VALUE: any value (Exists)",
        parse=_toleration, action="append", flag="--trainer-toleration", metavar="KEY[=VALUE][:EFFECT]")
    kserve_name: str = setting("signs", "the KServe InferenceService each push on the store leaves beside the "
                                        "model (its TF Serving model name)")
    kserve_namespace: Optional[str] = setting(None, "its namespace (default: --namespace, else the one `deploy` or "
                                                    "kubectl uses)")
    kserve_service_account: Optional[str] = setting(None, "its predictor's ServiceAccount (default: signs-kserve for "
                                                          "minio:// roots, else the namespace's)")
    kserve: bool = setting(True, "write no InferenceService manifest", flag="--no-kserve", action="store_false")
    # The cluster's store settings: the target KFP release's defaults and the `kfp-launcher`
    # ConfigMap's providers (components.data.stores); every task resolves stores from it. The
    # runner fills it from `kfp_release` and `launcher_config`.
    launcher: stores.LauncherConfig = stores.LauncherConfig()

    def __post_init__(self):
        if self.kserve_namespace is None and self.namespace:
            object.__setattr__(self, "kserve_namespace", self.namespace)
        # One root and one serving dir: the shared settings' own (the local runner's) are this config's.
        object.__setattr__(self, "pipeline", dataclasses.replace(self.pipeline, pipeline_root=self.root,
                                                                 serving_dir=PipelineRoot(self.root).serving_dir))

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
        return self.pipeline.serving_dir

    @property
    def default_data_root(self) -> str:
        return self.data_root or PipelineRoot(self.root).data


class CompileError(ValueError):
    """A setting the open-source KFP backend would refuse; one line."""


def check_root(root: str) -> None:
    """Raises CompileError unless the backend takes `root` and it can hold the serving dir."""
    if root.startswith("mem://"):
        raise CompileError(f"--pipeline-root {root}: mem:// keeps nothing after the run; use gs://, s3:// or minio://")
    if not root.startswith(ROOT_SCHEMES) or len(root.split("://", 1)[1].strip("/")) == 0:
        raise CompileError(f"--pipeline-root {root!r}: the KFP backend takes only gs://BUCKET/..., "
                           f"s3://BUCKET/... or minio://BUCKET/... roots")


def check_config(config: CompileConfig) -> None:
    """Raises CompileError for a setting the cluster would refuse, in one line: the root, the
    namespace, the launcher config, names, images and resources."""
    check_root(config.root)
    for problem in [kube_checks.location_problem(config.root, "--pipeline-root"),
                    kube_checks.location_problem(config.default_data_root, "--data-root"),
                    kube_checks.names_problem(config), kube_checks.resources_problem(config)]:
        if problem:
            raise CompileError(problem)
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
            if not kube_checks.DNS_1123_SUBDOMAIN.fullmatch(secret):
                raise CompileError(f"--launcher-config: secret {secret!r} is not a Kubernetes Secret name")
    except stores.StoreConfigError as e:
        raise CompileError(str(e)) from None


def _resources(cpu: str, memory: str, gpus: int = 0, accelerator: str = ""):
    from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=import-outside-toplevel

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    resources = spec(cpu_request=kube_checks.cpu_cores(cpu), cpu_limit=kube_checks.cpu_cores(cpu),
                     memory_request=kube_checks.gigabytes(memory), memory_limit=kube_checks.gigabytes(memory))
    if gpus:
        resources.accelerator.CopyFrom(spec.AcceleratorConfig(type=accelerator, count=gpus))
    return resources


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
