"""Tests of run-local's own parts: the pod's environment from the package alone, releases, bad input."""

import os
import subprocess
import sys
import io

import pytest
import yaml

from components.data import stores
from kubeflow import compile as kfp_compile, local_store, run_local
from components.data import storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def spec():
    return kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs:test"))


def _run_local(package, *args, env=None):
    return subprocess.run([sys.executable, "kubeflow/runner.py", "run-local", package, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)


def _trainer(spec):
    task = spec["root"]["dag"]["tasks"]["Trainer"]
    component = spec["components"][task["componentRef"]["name"]]
    return task, component, spec["deploymentSpec"]["executors"][component["executorLabel"]]


def test_a_task_sees_the_package_env_and_its_secrets_never_this_machines(spec, monkeypatch, tmp_path):
    """HOME was passed in, so a host ~/.aws/credentials (or gcloud's) was used where the pod has none."""
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    monkeypatch.setenv("SIGNS_MINIO_ENDPOINT", "http://host-store:9000")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/host/key.json")
    _, component, executor = _trainer(spec)
    platform = spec[kfp_compile.PLATFORM_KEY]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        component["executorLabel"]]
    secrets = {"mlpipeline-minio-artifact": {"accesskey": "pod-key", "secretkey": "pod-secret"}}
    release = stores.release("2.17")
    env = local_store.pod_env(executor["container"], platform, secrets, "Trainer", {}, str(tmp_path / "root"), release)
    assert env["HOME"] == str(tmp_path / "root" / "root") and os.listdir(env["HOME"]) == []
    assert env["AWS_ACCESS_KEY_ID"] == "pod-key" and env["AWS_SECRET_ACCESS_KEY"] == "pod-secret"
    assert "SIGNS_MINIO_ENDPOINT" not in env and "GOOGLE_APPLICATION_CREDENTIALS" not in env
    assert stores.from_environment(env).session("minio://mlpipeline/x").endpoint == "seaweedfs.kubeflow:9000"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2"  # the image's own ENV
    assert env["KFP_RETRY_INDEX"] == "0" and env["KFP_POD_NAME"].startswith("trainer-")
    with pytest.raises(local_store.StoreError, match="task Trainer: secret 'mlpipeline-minio-artifact' not found"):
        local_store.pod_env(executor["container"], platform, {}, "Trainer", {}, "/tmp/root", release)


@pytest.mark.parametrize("release, output_file", [("2.5", "/tmp/kfp_outputs/output_metadata.json"),
                                                  ("2.17", "/minio/mlpipeline/r/Trainer/s/output_metadata.json")])
def test_executor_input_of_each_release(spec, release, output_file):
    task, component, _ = _trainer(spec)
    produced = {"ExampleGen": {"examples": {"name": "7", "uri": "minio://mlpipeline/r/eg/examples", "metadata": {"span": 0.0}}},
                "CurateSchema": {"curated_schema": {"name": "8", "uri": "minio://mlpipeline/r/s/schema", "metadata": {}}}}
    params = kfp_compile.parameter_values(spec, {})
    executor_in = run_local.executor_input("Trainer", task, component, params, produced, "minio://mlpipeline/r/Trainer/s",
                                           stores.release(release))
    assert executor_in["outputs"]["outputFile"] == output_file
    examples = executor_in["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert examples == {"name": "7", "uri": "minio://mlpipeline/r/eg/examples", "metadata": {"span": 0.0},
                        "type": {"instanceSchema": ""}}
    assert "executor-logs" in executor_in["outputs"]["artifacts"]


def test_a_missing_secret_and_an_unreachable_store_are_one_line_without_the_secret(spec, tmp_path):
    package = kfp_compile.write(spec, str(tmp_path / "pipeline.yaml"))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="key-id", AWS_SECRET_ACCESS_KEY="HOST-SECRET-123")
    out = _run_local(package, "--work-dir", str(tmp_path / "w"), env=env)
    assert out.returncode == 1
    assert out.stdout.strip() == ("error: the launcher's secret 'mlpipeline-minio-artifact' not found (failed to "
                                  "retrieve credentials for bucket mlpipeline)")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlpipeline-minio-artifact"},
                                       "stringData": {"accesskey": "k", "secretkey": "SECRET-VALUE-123"}}))
    out = _run_local(package, "--work-dir", str(tmp_path / "w"), "--secrets", str(secrets), env=env)
    # The launcher reaches the release's store service, not this machine's settings.
    assert out.returncode == 1
    assert out.stdout.strip() == ("error: minio://mlpipeline/v2/artifacts/data at http://seaweedfs.kubeflow:9000: "
                                  "cannot connect")
    assert "SECRET-VALUE-123" not in out.stdout + out.stderr and "HOST-SECRET" not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_a_multi_user_release_needs_a_package_for_a_namespace(spec, tmp_path):
    package = kfp_compile.write(spec, str(tmp_path / "pipeline.yaml"))
    out = _run_local(package, "--local-store", "--kfp-release", "2.17-multi-user", "--work-dir", str(tmp_path / "w"))
    assert out.returncode == 1
    assert out.stdout.strip() == "error: --kfp-release 2.17-multi-user: the package was compiled without --namespace"


def test_the_namespace_filter_refuses_keys_outside_its_prefixes():
    """The stand-in answers 403 as SeaweedFS does under the profile controller's policies."""
    calls = []
    app = local_store.namespace_filter({"team-a-key": "team-a"})(lambda env, start: calls.append(env) or [b"ok"])

    def request(path, query="", method="GET", key="team-a-key"):
        status = []
        env = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method,
               "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential={key}/20261206/us-east-1/s3/aws4_request, ..."}
        body = app(env, lambda s, h: status.append(s))
        return status[0] if status else "200", b"".join(body)

    assert request("/mlpipeline/private-artifacts/team-a/v2/x")[0] == "200"
    assert request("/mlpipeline", "list-type=2&prefix=private-artifacts/team-a/v2/")[0] == "200"
    assert request("/mlpipeline", "delimiter=/")[0] == "200" and request("/mlpipeline", method="HEAD")[0] == "200"
    status, body = request("/mlpipeline/v2/artifacts/serving_model/1/saved_model.pb", method="PUT")
    assert status == "403 Forbidden" and b"<Code>AccessDenied</Code>" in body
    assert request("/mlpipeline/private-artifacts/team-b/x")[0] == "403 Forbidden"
    assert request("/mlpipeline", "list-type=2&prefix=private-artifacts/")[0] == "403 Forbidden"
    assert request("/mlpipeline/v2/x", key="kfp-admin")[0] == "200"  # another key: not filtered


def test_the_namespace_filter_checks_every_key_of_a_bulk_delete():
    seen = []
    app = local_store.namespace_filter({"k": "team-a"})(lambda env, start: seen.append(env["wsgi.input"].read()) or [b""])

    def delete(*keys):
        body = ("<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>").encode()
        status = []
        app({"PATH_INFO": "/mlpipeline", "QUERY_STRING": "delete", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
             "wsgi.input": io.BytesIO(body), "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=k/x"},
            lambda s, h: status.append(s))
        return status[0] if status else "200"

    assert delete("private-artifacts/team-a/a", "shared/b") == "200" and b"<Key>shared/b</Key>" in seen[-1]
    assert delete("private-artifacts/team-a/a", "v2/artifacts/x") == "403 Forbidden"


def test_a_launcher_of_another_release_serves_a_store_the_package_cannot_reach(spec, tmp_path):
    """Point 1 as a cluster shows it: a 2.5 launcher's store answers as minio-service.kubeflow:9000,
    while the 2.17 package's tasks ask seaweedfs.kubeflow:9000, which is not there."""
    _, component, executor = _trainer(spec)
    platform = spec[kfp_compile.PLATFORM_KEY]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        component["executorLabel"]]
    root = "minio://mlpipeline/v2/artifacts"
    with local_store.ClusterStore(stores.LauncherConfig(release="2.5"), root, str(tmp_path)).running() as cluster:
        assert list(cluster.addresses) == ["minio-service.kubeflow:9000"]
        env = local_store.pod_env(executor["container"], platform, cluster.secrets, "Trainer", cluster.network_env(),
                                str(tmp_path), stores.release("2.5"))
        with storage.configured(stores.StoreSettings.from_environment(env)):
            reason = storage.check_reachable(root)
    assert reason.startswith(f"{root} at http://seaweedfs.kubeflow:9000: ")


@pytest.mark.parametrize("document, said", [
    ("kind: Secret\nmetadata: just-a-name\n", "document 1 holds something other than a Kubernetes Secret with a name"),
    ("kind: Secret\nmetadata: {name: s}\ndata: [a, b]\n", "secret 's': data is not a mapping of keys to values"),
    ("kind: Secret\nmetadata: {name: s}\ndata: {accesskey: 'not base64!'}\n",
     "secret 's' key 'accesskey': data is not base64 of UTF-8 text (put plain text under stringData)"),
    ("kind: Secret\nmetadata: {name: s}\ndata: {accesskey: '//79'}\n",
     "secret 's' key 'accesskey': data is not base64 of UTF-8 text"),
    ("kind: Secret\nmetadata: {name: s}\nstringData: {'bad key/x': v}\n", "secret 's': 'bad key/x' is not a valid key"),
    ("items: 7\n", "document 1 holds something other than a Kubernetes Secret with a name"),
    ("- 1\n- 2\n", "document 1 holds something other than a Kubernetes Secret with a name"),
])
def test_a_malformed_secret_is_one_line_naming_file_secret_and_key(tmp_path, document, said):
    """Each was a traceback, or a line that named no file or key."""
    path = tmp_path / "secrets.yaml"
    path.write_text(document)
    with pytest.raises(local_store.StoreError) as raised:
        local_store.load_secrets(str(path))
    assert str(raised.value).startswith(f"--secrets {path}: {said}")
    assert "\n" not in str(raised.value)
