"""Tests of `kubeflow/runner.py deploy` against a stand-in Kubernetes API server on 127.0.0.1.

The stand-in answers what the kubernetes client (26.1, CustomObjectsApi) really sends for an
InferenceService, the way kube-apiserver answers it:

- POST /apis/serving.kserve.io/v1beta1/namespaces/NS/inferenceservices (application/json):
  201 with the object; 409 AlreadyExists if the name is taken; 404 with details.kind=namespaces
  for a missing namespace;
- PATCH .../inferenceservices/NAME: applies an RFC 7386 merge patch, the only body it takes
  besides JSON patch, as custom resources have no strategic merge patch (415 otherwise);
- 401 without the kubeconfig's bearer token; 403 and a missing CRD (404, "the server could not find
  the requested resource") when told to.

Every request is recorded: method, path, query, Content-Type, Authorization, body.
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from types import SimpleNamespace

import pytest
import yaml

from components.push import kserve_manifests
from kubeflow import deploy
from testsupport import fixtures
from components.data import stores
from components.push import version_dirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "kube-s3cr3t-bearer-token"
NAMESPACE = "kubeflow-user"
SERVING_DIR = "minio://mlpipeline/v2/artifacts/serving_model"
COLLECTION = f"/apis/{kserve_manifests.GROUP}/{kserve_manifests.VERSION}/namespaces/{{}}/{kserve_manifests.PLURAL}"


def _status(code, reason, message, details=None):
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "details": details or {}, "code": code}


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class StandInAPI:
    """The Kubernetes API paths an InferenceService create or merge patch uses, with kube-apiserver's answers."""

    def __init__(self):
        self.requests, self.objects = [], {}
        self.namespaces = {NAMESPACE, "default"}
        self.crd_installed, self.forbidden, self.echo_auth_in_500 = True, False, False
        self.no_crd_body = "status"  # or "text": what older API servers sent for unknown paths
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802  (http.server's naming)
                self._answer(api.answer("POST", self))

            def do_PATCH(self):  # noqa: N802
                self._answer(api.answer("PATCH", self))

            def _answer(self, answer):
                code, body = answer
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method, request):
        url = urllib.parse.urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length) or b"null")
        self.requests.append({"method": method, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                              "content_type": request.headers.get("Content-Type"),
                              "authorization": request.headers.get("Authorization"), "body": body})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        if self.echo_auth_in_500:
            return _status(500, "InternalError", f"Internal error occurred: bad header {request.headers.get('Authorization')}")
        parts = url.path.split("/")  # '', apis, group, version, namespaces, NS, plural[, name]
        if not self.crd_installed or parts[1:5] != ["apis", kserve_manifests.GROUP, kserve_manifests.VERSION, "namespaces"] \
                or len(parts) < 7 or parts[6] != kserve_manifests.PLURAL:
            if self.no_crd_body == "text":
                return 404, "404 page not found\n"
            return _status(404, "NotFound", "the server could not find the requested resource")
        namespace = parts[5]
        if self.forbidden:
            verb = {"POST": "create", "PATCH": "patch"}[method]
            return _status(403, "Forbidden", f'{kserve_manifests.PLURAL}.{kserve_manifests.GROUP} is forbidden: User "system:serviceaccount:'
                                             f'kubeflow:pipeline-runner" cannot {verb} resource "{kserve_manifests.PLURAL}" in API '
                                             f'group "{kserve_manifests.GROUP}" in the namespace "{namespace}"',
                           {"group": kserve_manifests.GROUP, "kind": kserve_manifests.PLURAL})
        if namespace not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})
        if method == "POST" and len(parts) == 7:
            if request.headers.get("Content-Type") != "application/json":
                return _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
            key = (namespace, body["metadata"]["name"])
            if key in self.objects:
                return _status(409, "AlreadyExists", f'{kserve_manifests.PLURAL}.{kserve_manifests.GROUP} "{key[1]}" already exists',
                               {"name": key[1], "group": kserve_manifests.GROUP, "kind": kserve_manifests.PLURAL})
            self.objects[key] = dict(body, metadata=dict(body["metadata"], namespace=namespace, resourceVersion="1"))
            return 201, self.objects[key]
        if method == "PATCH" and len(parts) == 8:
            if request.headers.get("Content-Type") not in ("application/merge-patch+json", "application/json-patch+json"):
                return _status(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            key = (namespace, parts[7])
            if key not in self.objects:
                return _status(404, "NotFound", f'{kserve_manifests.PLURAL}.{kserve_manifests.GROUP} "{key[1]}" not found',
                               {"name": key[1], "group": kserve_manifests.GROUP, "kind": kserve_manifests.PLURAL})
            self.objects[key] = merge_patch(self.objects[key], body)
            return 200, self.objects[key]
        return _status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def kubeconfig(path, server, namespace=NAMESPACE, token=TOKEN):
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
              "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
              "users": [{"name": "me", "user": {"token": token}}],
              "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "me", "namespace": namespace}},
                           {"name": "other", "context": {"cluster": "stand-in", "user": "me", "namespace": "default"}}]}
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def api(tmp_path):
    stand_in = StandInAPI()
    stand_in.kubeconfig = kubeconfig(tmp_path / "kubeconfig", stand_in.url)
    yield stand_in
    stand_in.server.shutdown()


def _manifest(version=1, namespace=NAMESPACE):
    return kserve_manifests.inference_service(SERVING_DIR, namespace=namespace, version=version)


def _apply(api, manifest):
    cluster = deploy.KServeCluster(api.kubeconfig)
    try:
        return cluster.apply(manifest)
    except deploy.DeployError as e:
        return f"error: {e}"


def test_create_then_merge_patch_when_it_exists(api):
    first = _manifest(version=1)
    assert _apply(api, first) == "created"
    [post] = api.requests
    assert post["method"] == "POST" and post["path"] == COLLECTION.format(NAMESPACE)
    assert post["content_type"] == "application/json" and post["body"] == first
    assert post["query"] == {"fieldManager": [deploy.FIELD_MANAGER]}
    assert post["authorization"] == f"Bearer {TOKEN}"

    second = _manifest(version=2)
    assert _apply(api, second) == "updated"
    post, patch = api.requests[1:]
    assert (post["method"], post["path"]) == ("POST", COLLECTION.format(NAMESPACE))  # answered 409
    assert patch["method"] == "PATCH" and patch["path"] == COLLECTION.format(NAMESPACE) + "/signs"
    assert patch["content_type"] == "application/merge-patch+json" and patch["body"] == second
    stored = api.objects[(NAMESPACE, "signs")]
    assert stored["metadata"]["annotations"][kserve_manifests.VERSION_KEY] == "2"
    assert stored["spec"] == second["spec"]


def test_forbidden_is_one_line_that_says_who_and_what(api):
    api.forbidden = True
    line = _apply(api, _manifest())
    assert line == (f'error: {api.url}: forbidden (HTTP 403): inferenceservices.serving.kserve.io is forbidden: User '
                    f'"system:serviceaccount:kubeflow:pipeline-runner" cannot create resource "inferenceservices" in '
                    f'API group "serving.kserve.io" in the namespace "{NAMESPACE}"')


@pytest.mark.parametrize("body", ["status", "text"])
def test_a_cluster_without_kserve_is_one_line(api, body):
    api.crd_installed, api.no_crd_body = False, body
    assert _apply(api, _manifest()) == (f"error: {api.url}: no inferenceservices.serving.kserve.io/v1beta1 API there "
                                        f"(HTTP 404): is KServe installed? (kubectl get crd inferenceservices.serving.kserve.io)")


def test_a_missing_namespace_is_named(api):
    assert _apply(api, _manifest(namespace="nope")) == f"error: {api.url}: namespace nope not found (HTTP 404)"


def test_a_refused_token_is_one_line(api, tmp_path):
    api.kubeconfig = kubeconfig(tmp_path / "other", api.url, token="wrong-token")
    line = _apply(api, _manifest())
    assert line == f"error: {api.url}: the credentials were refused (HTTP 401)"
    assert "wrong-token" not in line


def test_the_token_is_never_shown_even_when_echoed(api):
    api.echo_auth_in_500 = True
    line = _apply(api, _manifest())
    assert line == f"error: {api.url}: HTTP 500 Internal Server Error: Internal error occurred: bad header <token>"
    assert TOKEN not in line


def test_connection_refused_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    api = SimpleNamespace(kubeconfig=kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
    assert _apply(api, _manifest()) == f"error: http://127.0.0.1:{port}: unreachable ([Errno 111] Connection refused)"


def test_a_server_that_drops_the_connection_is_tried_once(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def drop_each():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                connections.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())

    threading.Thread(target=drop_each, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    api = SimpleNamespace(kubeconfig=kubeconfig(tmp_path / "kubeconfig", url))
    try:
        line = _apply(api, _manifest())
    finally:
        listener.close()
    assert line.startswith(f"error: {url}: unreachable (") and "\n" not in line
    assert connections == [f"POST {COLLECTION.format(NAMESPACE)}?fieldManager={deploy.FIELD_MANAGER} HTTP/1.1"]


def test_a_missing_kubeconfig_is_one_line(tmp_path):
    with pytest.raises(deploy.DeployError, match=f"^kubeconfig {tmp_path}/nope: "):
        deploy.KServeCluster(str(tmp_path / "nope"))


def test_the_namespace_defaults_to_the_contexts(api):
    assert deploy.KServeCluster(api.kubeconfig).namespace == NAMESPACE
    assert deploy.KServeCluster(api.kubeconfig, context="other").namespace == "default"


def test_the_serving_dir_of_a_package_is_where_its_pusher_pushes():
    from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel  (TFX)
    spec = kfp_compile.build(kfp_compile.CompileConfig(pipeline_root="s3://bucket/root/"))
    pusher = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]["push_destination"]
    pushes_to = json.loads(pusher["runtimeValue"]["constant"])["filesystem"]["base_directory"]
    assert deploy.package_serving_dir(spec) == pushes_to == "s3://bucket/root/serving_model"


def test_a_package_without_a_root_asks_for_the_serving_dir():
    with pytest.raises(deploy.DeployError, match="pass --serving-dir"):
        deploy.package_serving_dir({"root": {}})


# -- the command line, as a user runs it -------------------------------------------------------

def _deploy(*args, env):
    return subprocess.run([sys.executable, "kubeflow/runner.py", "deploy", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def pushed(tmp_path):
    """A minio:// serving dir on a stand-in store (moto) with version 1 pushed; yields the environment.

    moto keeps its buckets per process, so each test pushes to a serving dir of its own.
    """
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_text("graph")
    with fixtures.stand_in_store("minio://mlpipeline") as store:
        serving_dir = f"minio://mlpipeline/{tmp_path.name}/serving_model"
        version_dirs.push(str(model), serving_dir, {"model_uri": "m1"})
        yield SimpleNamespace(env=dict(os.environ, **store.env), serving_dir=serving_dir,
                              storage_uri=serving_dir.replace("minio://", "s3://"))


def test_deploy_creates_then_updates_and_says_so_in_one_line(api, pushed):
    args = ("--serving-dir", pushed.serving_dir, "--kubeconfig", api.kubeconfig)
    first, second = _deploy(*args, env=pushed.env), _deploy(*args, env=pushed.env)
    expected = f"InferenceService {NAMESPACE}/signs on {api.url} ({pushed.storage_uri}, version 1)"
    assert (first.returncode, first.stdout) == (0, f"created {expected}\n")
    assert (second.returncode, second.stdout) == (0, f"updated {expected}\n")
    assert [r["method"] for r in api.requests] == ["POST", "POST", "PATCH"]
    assert api.requests[0]["body"]["metadata"]["labels"][kserve_manifests.VERSION_KEY] == "1"
    for out in (first, second):
        assert TOKEN not in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_deploy_failure_is_one_line_and_exit_1(api, pushed):
    api.crd_installed = False
    out = _deploy("--serving-dir", pushed.serving_dir, "--kubeconfig", api.kubeconfig, "--namespace", "default",
                  env=pushed.env)
    assert out.returncode == 1
    assert out.stdout.splitlines() == [f"error: {api.url}: no inferenceservices.serving.kserve.io/v1beta1 API there "
                                       f"(HTTP 404): is KServe installed? (kubectl get crd inferenceservices.serving.kserve.io)"]
    assert api.requests[0]["path"] == COLLECTION.format("default")
    assert "Traceback" not in out.stderr


def test_dry_run_prints_the_manifest_only_and_touches_no_cluster(api, pushed):
    out = _deploy("--serving-dir", pushed.serving_dir, "--kubeconfig", api.kubeconfig, "--dry-run", env=pushed.env)
    assert out.returncode == 0 and api.requests == []
    assert yaml.safe_load(out.stdout) == kserve_manifests.inference_service(pushed.serving_dir, version=1)


def test_dry_run_without_the_store_has_no_version_and_says_why(tmp_path):
    env = dict(os.environ, SIGNS_MINIO_ENDPOINT="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    out = _deploy("--serving-dir", SERVING_DIR, "--dry-run", "--namespace", NAMESPACE, env=env)
    assert out.returncode == 0
    assert yaml.safe_load(out.stdout) == kserve_manifests.inference_service(SERVING_DIR, namespace=NAMESPACE)
    assert out.stderr.startswith(f"note: no version label: {SERVING_DIR} at http://127.0.0.1:9: ")


def test_dry_run_never_shows_a_password_in_the_store_endpoint(tmp_path):
    """`http://u:PASS@host` was printed."""
    env = dict(os.environ, SIGNS_MINIO_ENDPOINT="http://signs:pa55word@127.0.0.1:9", AWS_ACCESS_KEY_ID="k",
               AWS_SECRET_ACCESS_KEY="s")
    for extra in ((), ("--credentials-setup",)):
        out = _deploy("--serving-dir", SERVING_DIR, "--dry-run", "--namespace", NAMESPACE, *extra, env=env)
        assert "pa55word" not in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_a_serving_dir_with_nothing_pushed_is_refused(pushed):
    out = _deploy("--serving-dir", "minio://mlpipeline/empty/serving_model", "--dry-run", env=pushed.env)
    assert (out.returncode, out.stdout) == (1, "error: minio://mlpipeline/empty/serving_model: no model pushed there yet; "
                                               "nothing to serve\n")


def test_credentials_setup_prints_the_service_account_and_secret(pushed):
    out = _deploy("--serving-dir", pushed.serving_dir, "--namespace", NAMESPACE, "--credentials-setup", env=pushed.env)
    assert out.returncode == 0
    documents = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in documents] == ["ServiceAccount", "Secret"]
    endpoint = pushed.env["SIGNS_MINIO_ENDPOINT"]  # the stand-in store's, http://127.0.0.1:PORT
    assert documents[1]["metadata"]["annotations"] == {kserve_manifests.S3_ENDPOINT_ANNOTATION: endpoint.split("://")[1],
                                                       kserve_manifests.S3_USEHTTPS_ANNOTATION: "0"}
    assert "run-local" not in out.stdout  # the stand-in store's keys, in this process's environment


@pytest.mark.parametrize("release, endpoint", [(None, "seaweedfs.kubeflow:9000"), ("2.5", "minio-service.kubeflow:9000")])
def test_credentials_setup_of_a_package_names_its_releases_store(release, endpoint, tmp_path):
    """Point 1: the KServe secret reaches the store the package's tasks reach, whatever this machine says."""
    from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
    launcher = stores.LauncherConfig(release=release) if release else stores.LauncherConfig()
    package = kfp_compile.write(kfp_compile.build(kfp_compile.CompileConfig(launcher=launcher, namespace="team-a")),
                                str(tmp_path / "p.yaml"))
    env = dict(os.environ, SIGNS_MINIO_ENDPOINT="http://127.0.0.1:9")
    out = _deploy("--package", package, "--namespace", "team-a", "--credentials-setup", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    documents = list(yaml.safe_load_all(out.stdout))
    assert documents[1]["metadata"]["annotations"] == {kserve_manifests.S3_ENDPOINT_ANNOTATION: endpoint,
                                                       kserve_manifests.S3_USEHTTPS_ANNOTATION: "0",
                                                       kserve_manifests.S3_REGION_ANNOTATION: "minio"}
    assert "kubectl -n team-a get secret mlpipeline-minio-artifact" in out.stdout  # the profile's own keys
    assert documents[0]["metadata"]["namespace"] == "team-a"

