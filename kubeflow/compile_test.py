"""Tests of the compiled package: only what open-source KFP runs, GPU for the Trainer, parameters."""

import os
import subprocess
import sys
import re
import json

import pytest

from components.data import stores
from kubeflow import compile as kfp_compile
from kubeflow import kube_checks
from kubeflow.run_local import task_order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def spec():
    return kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs-pipeline:0.1.0",
                                                       pipeline_root="gs://bucket/signs"))


def test_only_container_executors_and_no_driver_hooks(spec):
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == 11
    for label, executor in executors.items():
        assert set(executor) <= {"container", "importer"}, (label, sorted(executor))  # no resolver
        container = executor.get("container")
        if container:
            assert "lifecycle" not in container, label  # open-source KFP does not run hooks
            assert container["image"] == "registry.example/signs-pipeline:0.1.0"
            # Ours, which takes what the open-source launcher sends (kubeflow/entrypoint.py).
            assert container["command"] == ["python", "-m", "kubeflow.entrypoint"]
            assert "--json_serialized_inputs_spec_args" in container["args"]  # where input types come from
            assert container["resources"]["cpuRequest"] > 0, label  # ExampleGen's too
    assert "resolver" not in str(spec).lower()
    assert sorted(spec["root"]["dag"]["tasks"]) == sorted(
        ["ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator", "DataChecks",
         "Trainer", "LatestServedModel", "Evaluator", "Pusher", "Review"])
    assert "DataChecks" in spec["root"]["dag"]["tasks"]["Trainer"]["dependentTasks"]  # the gate


def test_beam_components_run_in_process_without_fetching_a_runner(spec):
    """Every Beam component names the FnApiRunner: Beam's default would download Prism from GitHub in the pod."""
    beam_tasks = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Evaluator")
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if any(label.endswith(f"{task}_executor") for task in beam_tasks):
            args = executor["container"]["args"]
            assert "--runner=FnApiRunner" in args, label


def test_trainer_asks_for_one_gpu_by_default(spec):
    resources = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["resources"]
    assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    other = spec["deploymentSpec"]["executors"]["Evaluator_executor"]["container"]["resources"]
    assert "accelerator" not in other and other["cpuRequest"] == 2.0 and other["memoryRequest"] == 8.0


def test_gpus_and_accelerator_flags():
    spec = kfp_compile.build(kfp_compile.CompileConfig(gpus=2, accelerator="amd.com/gpu", trainer_memory="64Gi"))
    resources = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["resources"]
    assert resources["accelerator"] == {"type": "amd.com/gpu", "count": "2"}
    assert resources["memoryRequest"] == pytest.approx(64 * 1.073741824)
    cpu_only = kfp_compile.build(kfp_compile.CompileConfig(gpus=0))
    assert "accelerator" not in cpu_only["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["resources"]


def test_the_trainer_can_be_placed_on_a_tainted_gpu_pool(tmp_path):
    """The Trainer could be given neither tolerations nor a nodeSelector, so on a tainted GPU pool it
    stayed Pending. Field names: kfp-kubernetes' KubernetesExecutorConfig (kubernetes_platform/proto/
    kubernetes_executor_config.proto at kubeflow/pipelines 0537b86: node_selector.labels, tolerations)."""
    from kubeflow import runner  # pylint: disable=import-outside-toplevel
    out = _compile("--output", str(tmp_path / "p.yaml"), "--pipeline-root", "gs://bucket/signs",
                   "--trainer-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
                   "--trainer-toleration", "nvidia.com/gpu=present:NoSchedule", "--trainer-toleration", "dedicated")
    assert out.returncode == 0, out.stdout + out.stderr
    spec = kfp_compile.load(str(tmp_path / "p.yaml"))
    executors = spec[kfp_compile.PLATFORM_KEY]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["Trainer_executor"] == {
        "nodeSelector": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
                        {"key": "dedicated", "operator": "Exists"}]}
    assert list(executors) == ["Trainer_executor"]  # only the Trainer runs on the GPU pool
    with pytest.raises(SystemExit):
        runner.build_parser().parse_args(["compile", "--trainer-node-selector", "no-value"])
    out = _compile("--output", str(tmp_path / "q.yaml"), "--pipeline-root", "gs://bucket/signs",
                   "--trainer-toleration", "gpu=x:Sometimes")
    assert out.returncode == 2 and out.stdout.startswith("error: --trainer-toleration gpu=x:Sometimes: expected")


def test_runtime_parameters_with_defaults(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["data_root"] == {"parameterType": "STRING", "defaultValue": "gs://bucket/signs/data", "isOptional": True}
    assert params["data_fingerprint"] == {"parameterType": "STRING", "defaultValue": "", "isOptional": True}
    assert params["epochs"]["parameterType"] == "NUMBER_INTEGER" and params["epochs"]["defaultValue"] == 30
    assert params["min_accuracy"]["defaultValue"] == 0.9 and params["min_improvement"]["defaultValue"] == 0.0
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ExampleGen"]["inputs"]["parameters"]["input_base"] == {"componentInputParameter": "data_root"}
    assert tasks["Trainer"]["inputs"]["parameters"]["epochs"] == {"componentInputParameter": "epochs"}
    assert tasks["Evaluator"]["inputs"]["parameters"]["min_accuracy"] == {"componentInputParameter": "min_accuracy"}


def test_the_package_carries_its_root_and_puts_everything_under_it(spec):
    assert spec["defaultPipelineRoot"] == "gs://bucket/signs"
    tasks = spec["root"]["dag"]["tasks"]
    serving_dir = tasks["LatestServedModel"]["inputs"]["parameters"]["serving_dir"]["runtimeValue"]["constant"]
    assert serving_dir == "gs://bucket/signs/serving_model"
    assert '"checkpoint_root": "gs://bucket/signs/checkpoints"' in tasks["Trainer"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"]


@pytest.mark.parametrize("root", ["/mnt/signs-pipeline", "mem://x", "hdfs://n/p", "gs://", "minio:///"])
def test_compile_refuses_a_root_the_backend_refuses(root):
    with pytest.raises(kfp_compile.CompileError, match="--pipeline-root"):
        kfp_compile.check_root(root)


def _task_stores(spec):
    """Each container's launcher config, from its env as the pod gets it."""
    return {label: stores.from_environment({e["name"]: e["value"] for e in executor["container"].get("env", [])})
            for label, executor in spec["deploymentSpec"]["executors"].items()}


@pytest.mark.parametrize("release, endpoint", [(None, "seaweedfs.kubeflow:9000"), ("2.5", "minio-service.kubeflow:9000")])
def test_every_task_reaches_the_releases_store(release, endpoint):
    """Point 1: KFP 2.16+ ships SeaweedFS (seaweedfs.kubeflow:9000); older releases MinIO."""
    launcher = stores.LauncherConfig(release=release) if release else stores.LauncherConfig()
    spec = kfp_compile.build(kfp_compile.CompileConfig(pipeline_root="minio://mlpipeline/v2/artifacts", launcher=launcher))
    found = _task_stores(spec)
    assert len(found) == 11 and all(c is not None for c in found.values())
    for config in found.values():
        assert config.session("minio://mlpipeline/v2/artifacts/data").endpoint_url() == f"http://{endpoint}"
        assert f'"minioEndpoint": "{endpoint}"' in config.to_json()  # readable in the YAML too


def test_minio_root_gets_kfps_credentials_secret(tmp_path):
    spec = kfp_compile.build(kfp_compile.CompileConfig(pipeline_root="minio://mlpipeline/v2/artifacts"))
    platform = spec[kfp_compile.PLATFORM_KEY]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(platform) == set(spec["deploymentSpec"]["executors"])
    assert platform["Trainer_executor"]["secretAsEnv"] == [{"secretName": "mlpipeline-minio-artifact", "keyToEnv": [
        {"secretKey": "accesskey", "envVar": "AWS_ACCESS_KEY_ID"}, {"secretKey": "secretkey", "envVar": "AWS_SECRET_ACCESS_KEY"}]}]
    # On disk: the PipelineSpec, then the platform spec, as kfp.Client reads a package.
    path = kfp_compile.write(spec, str(tmp_path / "pipeline.yaml"))
    from kfp.client.client import _extract_pipeline_yaml  # pylint: disable=import-outside-toplevel
    doc = _extract_pipeline_yaml(path)
    assert doc.pipeline_spec.default_pipeline_root == "minio://mlpipeline/v2/artifacts"
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel
    read = json_format.MessageToDict(doc.platform_spec)["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert read["Trainer_executor"]["secretAsEnv"][0]["secretName"] == "mlpipeline-minio-artifact"
    assert kfp_compile.load(path) == spec


def test_example_gen_cache_key_holds_the_data_fingerprint(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ExampleGen"]["inputs"]["parameters"]["data_fingerprint"] == {"componentInputParameter": "data_fingerprint"}
    component = spec["components"][tasks["ExampleGen"]["componentRef"]["name"]]
    assert component["inputDefinitions"]["parameters"]["data_fingerprint"] == {"parameterType": "STRING"}


def test_baseline_is_never_cached(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["LatestServedModel"]["cachingOptions"] == {"enableCache": False}
    assert tasks["Trainer"]["cachingOptions"] == {"enableCache": True}


def test_written_package_loads_in_kfp(spec, tmp_path):
    import kfp.components  # pylint: disable=import-outside-toplevel
    path = kfp_compile.write(spec, str(tmp_path / "pipeline.yaml"))
    component = kfp.components.load_component_from_file(path)
    assert component.name == "signs"
    assert set(component.component_spec.inputs) == set(spec["root"]["inputDefinitions"]["parameters"])
    assert {"data_root", "data_fingerprint", "epochs", "learning_rate", "min_accuracy"} <= set(component.component_spec.inputs)
    assert kfp_compile.load(path) == spec


def test_parameter_overrides_are_typed(spec):
    values = kfp_compile.parameter_values(spec, {"epochs": "3", "min_accuracy": "0.5", "data_root": "/d",
                                                 "learning_rate": "0.01", "augment": "0"})
    assert {k: values[k] for k in ("data_root", "data_fingerprint", "epochs", "min_accuracy", "min_improvement",
                                   "learning_rate", "augment", "batch_size")} == {
        "data_root": "/d", "data_fingerprint": "", "epochs": 3, "min_accuracy": 0.5, "min_improvement": 0.0,
        "learning_rate": 0.01, "augment": 0, "batch_size": 32}
    with pytest.raises(ValueError, match="no such parameter"):
        kfp_compile.parameter_values(spec, {"epoch": "3"})
    with pytest.raises(ValueError, match="epochs=many: not a number_integer"):
        kfp_compile.parameter_values(spec, {"epochs": "many"})


def test_task_order_respects_dependencies(spec):
    tasks = spec["root"]["dag"]["tasks"]
    order = task_order(tasks)
    for name, task in tasks.items():
        for dependency in task.get("dependentTasks", []):
            assert order.index(dependency) < order.index(name)


def _locked(path):
    pins = {}
    for line in open(os.path.join(REPO, path)):
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_dockerfile_installs_the_versions_make_run_uses():
    """The image installs what `make setup` installs: the same uv, a lock with make's versions (plus
    TensorFlow's CUDA libraries), the project with no dependencies of its own, on TFX's base image."""
    made = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    installs = [line.split() for line in made.splitlines() if " install " in line]
    uv = [w for words in installs for w in words if w.startswith("uv==")]
    assert [words[words.index("-r") + 1] for words in installs if "-r" in words] == ["requirements.lock"]
    assert any(words[-3:] == ["--no-deps", "-e", "."] for words in installs) and len(uv) == 1

    with open(os.path.join(REPO, "kubeflow", "Dockerfile")) as f:
        docker = f.read().replace("\\\n", " ")  # continuation lines joined
    local = _locked("requirements.lock")
    assert re.findall(r"^FROM (\S+)", docker, re.M) == [f"gcr.io/tfx-oss-public/tfx:{local['tfx']}"]
    runs = " && ".join(re.findall(r"^RUN (.*)$", docker, re.M))
    assert [" ".join(c.split()) for c in re.findall(r"pip install [^&]*", runs)] == [
        f"pip install --no-cache-dir {uv[0]}",
        "pip install --system --no-cache -r requirements-gpu.lock",
        "pip install --system --no-cache --no-deps ."], runs
    image = _locked("requirements-gpu.lock")
    assert {name: version for name, version in local.items() if image.get(name) != version} == {}
    assert any(n.startswith("nvidia-cudnn") for n in image)  # the GPU nodes get TensorFlow's CUDA libraries


def test_every_training_knob_is_a_runtime_parameter_of_the_trainer():
    """`compile --epochs 20 --learning-rate 0.002` sets the defaults; each run may change any knob."""
    from pipeline import options  # pylint: disable=import-outside-toplevel
    from components.training.train_config import TrainConfig  # pylint: disable=import-outside-toplevel

    shared = options.PipelineConfig(train=TrainConfig(epochs=20, learning_rate=0.002, augment=False),
                                    classes=(0, 1, 2), keep_last=3)
    spec = kfp_compile.build(kfp_compile.CompileConfig(pipeline=shared))
    params = spec["root"]["inputDefinitions"]["parameters"]
    trainer = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    for field in TrainConfig.knobs():
        if field.metadata["kubeflow"] == "runtime":
            assert trainer[field.name] == {"componentInputParameter": field.name}, field.name
            assert "defaultValue" in params[field.name], field.name
        else:  # max_image_pixels: ExampleGen's setting too, fixed in the package
            assert field.name not in params and "runtimeValue" in trainer[field.name]
    assert (params["epochs"]["defaultValue"], params["learning_rate"]["defaultValue"]) == (20, 0.002)
    assert params["augment"] == {"parameterType": "NUMBER_INTEGER", "defaultValue": 0, "isOptional": True}
    custom = trainer["custom_config"]["runtimeValue"]["constant"]
    assert '"num_classes": 3' in custom and "epochs" not in custom  # epochs travels once: as a parameter
    for name in ("min_accuracy", "min_improvement", "min_class_share"):
        assert name in params


def test_the_pusher_leaves_a_kserve_manifest_unless_told_not_to(spec):

    def kserve_of(package):
        pusher = package["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]
        return json.loads(pusher["custom_config"]["runtimeValue"]["constant"])["kserve"]

    assert kserve_of(spec) == {"name": "signs", "namespace": None, "service_account": None}
    named = kfp_compile.build(kfp_compile.CompileConfig(kserve_name="hands", kserve_namespace="ml"))
    assert kserve_of(named) == {"name": "hands", "namespace": "ml", "service_account": None}
    assert kserve_of(kfp_compile.build(kfp_compile.CompileConfig(kserve=False))) is None


def test_a_namespace_puts_the_root_and_everything_under_it_in_its_prefix():
    """Point 3: a multi-user profile's keys touch only private-artifacts/<ns>/ (and artifacts/, private/<ns>/, shared/)."""
    spec = kfp_compile.build(kfp_compile.CompileConfig(namespace="team-a"))
    root = "minio://mlpipeline/private-artifacts/team-a/v2/artifacts"
    assert spec["defaultPipelineRoot"] == root
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["LatestServedModel"]["inputs"]["parameters"]["serving_dir"]["runtimeValue"]["constant"] == \
        root + "/serving_model"
    assert spec["root"]["inputDefinitions"]["parameters"]["data_root"]["defaultValue"] == root + "/data"
    assert f'"checkpoint_root": "{root}/checkpoints"' in \
        tasks["Trainer"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"]
    assert {c.namespace for c in _task_stores(spec).values()} == {"team-a"}


def _compile(*args):
    return subprocess.run([sys.executable, "kubeflow/runner.py", "compile", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, line", [
    (["--namespace", "team-a", "--pipeline-root", "minio://mlpipeline/v2/artifacts"],
     "error: --pipeline-root minio://mlpipeline/v2/artifacts: outside what namespace team-a's keys may touch "
     "(minio://mlpipeline/artifacts/, minio://mlpipeline/private-artifacts/team-a/, minio://mlpipeline/private/team-a/, "
     "minio://mlpipeline/shared/); use minio://mlpipeline/private-artifacts/team-a/v2/artifacts"),
    (["--kfp-release", "2.17-multi-user"], "error: --kfp-release 2.17-multi-user: a multi-user install needs --namespace "
                                           "(the profile's)"),
    (["--launcher-config", "CM", "--pipeline-root", "gs://bucket/signs"],
     "error: --launcher-config: providers has no gs provider for the root gs://bucket/signs (it has s3)"),
    (["--launcher-config", "BAD"], "error: kfp-launcher providers.s3: invalid provider config: missing default credentials"),
    (["--launcher-config", "MISSING"], "error: MISSING: No such file or directory"),
    (["--launcher-config", "PASSWORD"], "error: PASSWORD: providers.s3 endpoint <user info>@s3.example:9000 carries "
                                        "user:password@; give the keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                        "(or a secret) instead"),
    (["--launcher-config", "NEWLINE"], "error: NEWLINE: providers.s3 endpoint 'minio.x:9000\\nX-Injected: 1' is not "
                                       "host[:port] (letters, digits, '.', '-'; no path, spaces or control characters)"),
    (["--launcher-config", "LAUGHS"],
     "error: LAUGHS: not a kfp-launcher ConfigMap (aliases (*name) are not accepted here)"),
], ids=["namespace-root", "multi-user", "no-provider", "bad-provider", "missing", "password", "newline", "laughs"])
def test_bad_store_settings_are_one_line(args, line, tmp_path):
    """A password in a provider's endpoint was written into the package, then a 12-line traceback;
    a newline was written in; 398 bytes of YAML aliases ran 120 s at 1 GB and left 8 KB of package."""
    files = {"PASSWORD": "data:\n  providers: |\n    s3:\n      default: {endpoint: 'u:p/w @x@s3.example:9000', "
                         "credentials: {fromEnv: true}}\n",
             "NEWLINE": "data:\n  providers: |\n    s3:\n      default: {endpoint: \"minio.x:9000\\nX-Injected: 1\", "
                        "credentials: {fromEnv: true}}\n",
             "LAUGHS": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [str(tmp_path / a) if a in files else a for a in args]
    line = line.replace("PASSWORD", str(tmp_path / "PASSWORD")).replace("NEWLINE", str(tmp_path / "NEWLINE")) \
        .replace("LAUGHS", str(tmp_path / "LAUGHS"))
    cm = tmp_path / "cm.yaml"
    cm.write_text("data:\n  providers: |\n    s3:\n      default: {endpoint: 's3.example:9000', credentials: {fromEnv: true}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  providers: |\n    s3:\n      default: {endpoint: 's3.example:9000'}\n")
    args = [{"CM": str(cm), "BAD": str(bad), "MISSING": "MISSING"}.get(a, a) for a in args]
    out = _compile("--output", str(tmp_path / "p.yaml"), "--pipeline-root", "s3://bucket/signs", *args) \
        if "--pipeline-root" not in args else _compile("--output", str(tmp_path / "p.yaml"), *args)
    assert (out.returncode, out.stdout.strip()) == (2, line)
    assert not os.path.exists(tmp_path / "p.yaml") and "Traceback" not in out.stderr
    assert "p/w" not in out.stdout + out.stderr and not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_an_s3_provider_reaches_every_task():
    """Point 4: the tasks reach an s3:// store as the launcher does, from the kfp-launcher ConfigMap's providers."""
    configmap = """
data:
  providers: |
    s3:
      default:
        endpoint: s3.internal.example:9000
        disableSSL: true
        region: eu-1
        credentials: {fromEnv: false, secretRef: {secretName: s3-keys, accessKeyKey: id, secretKeyKey: key}}
"""
    launcher = stores.parse_configmap(configmap, "cm.yaml")
    spec = kfp_compile.build(kfp_compile.CompileConfig(pipeline_root="s3://bucket/signs", launcher=launcher))
    for config in _task_stores(spec).values():
        session = config.session("s3://bucket/signs/serving_model")
        assert (session.endpoint_url(), session.region) == ("http://s3.internal.example:9000", "eu-1")
    platform = spec[kfp_compile.PLATFORM_KEY]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["Evaluator_executor"]["secretAsEnv"] == [{"secretName": "s3-keys", "keyToEnv": [
        {"secretKey": "id", "envVar": "AWS_ACCESS_KEY_ID"}, {"secretKey": "key", "envVar": "AWS_SECRET_ACCESS_KEY"}]}]


@pytest.mark.parametrize("args, line", [
    (["--pipeline-root", "s3://bucket/../x"],
     "error: --pipeline-root 's3://bucket/../x': '.' and '..' are not allowed in an object-store path"),
    (["--pipeline-root", "minio://b/../../../../etc/cron.d/x"],
     "error: --pipeline-root 'minio://b/../../../../etc/cron.d/x': 'b' is not a valid bucket name (3-63 lowercase "
     "letters, digits, dots and hyphens)"),
    (["--pipeline-root", "s3://My_Bucket/signs"],
     "error: --pipeline-root 's3://My_Bucket/signs': 'My_Bucket' is not a valid bucket name (3-63 lowercase letters, "
     "digits, dots and hyphens)"),
    (["--data-root", "gs://bucket/data/../../other"],
     "error: --data-root 'gs://bucket/data/../../other': '.' and '..' are not allowed in an object-store path"),
    (["--image", "registry.example/signs:1\nevil: true"],
     "error: --image 'registry.example/signs:1\\nevil: true': not an image reference (REGISTRY/NAME:TAG, no spaces or "
     "newlines)"),
    (["--kserve-name", "../X_Bad!"],
     "error: --kserve-name '../X_Bad!': not a Kubernetes name: an RFC 1035 label (KServe's rule), lowercase letters, "
     "digits and '-', at most 63 characters"),
    (["--namespace", "Team A"],
     "error: --namespace 'Team A': not a Kubernetes name: an RFC 1123 label, lowercase letters, digits and '-', at most "
     "63 characters"),
    (["--memory", "1e99G"], "error: --memory '1e99G': expected a memory size up to 64Ti, e.g. 8G, 512Mi"),
    (["--memory", "1e3G"], "error: --memory '1e3G': expected a memory size up to 64Ti, e.g. 8G, 512Mi"),
    (["--trainer-memory", "inf"], "error: --trainer-memory 'inf': expected a memory size up to 64Ti, e.g. 8G, 512Mi"),
    (["--cpu", "1e1"], "error: --cpu '1e1': expected CPU cores in (0, 1024], e.g. 2, 0.5 or 500m"),
    (["--trainer-cpu", "lots"], "error: --trainer-cpu 'lots': expected CPU cores in (0, 1024], e.g. 2, 0.5 or 500m"),
    (["--gpus", "-1"], "error: --gpus -1: expected 0 (CPU only) to 64"),
    (["--output", "DIR"], "error: --output DIR: a directory; name the file, e.g. DIR/pipeline.yaml"),
])
def test_what_the_cluster_would_reject_is_refused_at_compile_in_one_line(args, line, tmp_path):
    """Each went into the package (or was a traceback): `..` escapes the launcher's local copy folder."""
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    line = line.replace("DIR", str(tmp_path))
    if "--output" not in args:
        args = ["--output", str(tmp_path / "p.yaml"), *args]
    if "--pipeline-root" not in args:
        args = ["--pipeline-root", "gs://bucket/signs", *args]
    out = _compile(*args)
    assert (out.returncode, out.stdout.strip()) == (2, line)
    assert not os.path.exists(tmp_path / "p.yaml") and "Traceback" not in out.stderr


def test_cpu_requests_take_kubernetes_quantities():
    assert kube_checks.cpu_cores("500m") == 0.5 and kube_checks.cpu_cores("2") == 2.0
    kfp_compile.check_config(kfp_compile.CompileConfig(pipeline_root="gs://bucket/signs", cpu="500m", gpus=0))
