"""Tests of `kubeflow/runner.py submit` failing clearly: no cluster is needed to get these right."""

import http.server
import os
import socket
import subprocess
import sys
import threading
from types import SimpleNamespace as NS

import pytest
from testsupport import fixtures
from components.data import storage
from components.data import stores
from components.push import kserve_manifests, version_dirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "s3cr3t-token-value"


def _submit(*args, env=None):
    return subprocess.run([sys.executable, "kubeflow/runner.py", "submit", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
    path = str(tmp_path_factory.mktemp("pkg") / "pipeline.yaml")
    return kfp_compile.write(kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs-pipeline:0.1.0")), path)


def test_unreachable_host_is_one_line(package):
    out = _submit("--host", "http://127.0.0.1:9", "--package", package)
    assert out.returncode == 1
    assert out.stdout.strip() == "error: http://127.0.0.1:9: unreachable ([Errno 111] Connection refused)"
    assert "Traceback" not in out.stderr


def test_a_host_that_drops_the_connection_is_tried_once(package):
    """Fails fast: one connection, then the error; no retry loop of ours, and kfp's never starts."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def drop_each():  # reads the request, then closes without an answer
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener is closed
            with conn:
                connections.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())

    threading.Thread(target=drop_each, daemon=True).start()
    host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        out = _submit("--host", host, "--package", package)
    finally:
        listener.close()
    assert out.returncode == 1
    assert out.stdout.strip() == f"error: {host}: unreachable (Remote end closed connection without response)"
    assert connections == ["GET /apis/v2beta1/healthz HTTP/1.1"]
    assert "Traceback" not in out.stderr


def test_missing_package(tmp_path):
    out = _submit("--host", "http://127.0.0.1:9", "--package", str(tmp_path / "nope.yaml"))
    assert out.returncode != 0
    assert out.stdout.strip().startswith(f"error: {tmp_path / 'nope.yaml'}: no such package")


class _Refuses(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's naming)
        self.send_response(401)
        self.end_headers()
        self.wfile.write(f"bad token {self.headers.get('Authorization')}".encode())

    def log_message(self, *args):
        pass


def test_refused_token_is_one_line_and_never_shown(package, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    host = f"http://127.0.0.1:{server.server_port}"
    try:
        env = dict(os.environ, KF_PIPELINES_SA_TOKEN_PATH=str(token_file))  # the in-cluster convention
        out = _submit("--host", host, "--package", package, "--param", "epochs=2", env=env)
    finally:
        server.shutdown()
    assert out.returncode != 0
    assert out.stdout.strip() == f"error: {host}: the token was refused (HTTP 401)"
    assert TOKEN not in out.stdout + out.stderr


def test_unknown_parameter_is_refused_before_contacting_the_host(package):
    out = _submit("--host", "http://127.0.0.1:9", "--package", package, "--param", "epoch=2")
    assert out.returncode != 0
    assert out.stdout.strip().startswith("error: --param epoch: the package has no such parameter")


@pytest.mark.parametrize("param, problem", [
    ("learning_rate=nan", "expected a number from 1e-07 to 1, got nan"),
    ("min_accuracy=inf", "expected a finite number, got inf"),
    ("epochs=-5", "expected a number from 0 to 10000, got -5"),
    ("mixup=1e308", "expected a number from 0 to 100, got 1e308"),
    ("precision=float64", "expected one of"),
])
def test_a_parameter_the_local_runner_refuses_is_refused_before_contacting_the_host(package, param, problem):
    """NaN training ran on the cluster until the Evaluator failed."""
    out = _submit("--host", "http://127.0.0.1:9", "--package", package, "--param", param)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stdout.strip().startswith(f"error: --param {param}: {problem}")


def test_a_binary_package_is_named_not_the_host(tmp_path):
    package = tmp_path / "pipeline.yaml"
    package.write_bytes(bytes(range(256)) * 4)
    out = _submit("--host", "http://127.0.0.1:9", "--package", str(package))
    assert out.returncode == 1
    assert out.stdout.strip().startswith(f"error: {package}: not a compiled pipeline (YAML)")


def test_an_image_without_a_registry_is_refused_before_contacting_the_host(tmp_path):
    from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
    local_only = kfp_compile.write(kfp_compile.build(kfp_compile.CompileConfig(image="signs-pipeline:0.1.0")),
                                   str(tmp_path / "pipeline.yaml"))
    out = _submit("--host", "http://127.0.0.1:9", "--package", local_only)
    assert out.returncode == 1
    assert out.stdout.strip() == ("error: the package's image signs-pipeline:0.1.0 names no registry a cluster can pull "
                                  "from; push it and compile with --image REGISTRY/signs-pipeline:0.1.0")


@pytest.mark.parametrize("image, ok", [("ghcr.io/me/signs:1", True), ("localhost:5000/signs:1", True),
                                       ("registry.example/signs", True), ("signs:1", False), ("me/signs:1", False)])
def test_registry_check(image, ok):
    from kubeflow import submit  # pylint: disable=import-outside-toplevel
    if ok:
        submit.check_image(image)
    else:
        with pytest.raises(submit.SubmitError, match="names no registry"):
            submit.check_image(image)


def test_fingerprint_of_an_unreachable_store_is_unique_and_said(capsys):
    from kubeflow import submit  # pylint: disable=import-outside-toplevel
    with storage.configured(stores.StoreSettings(minio_endpoint="http://127.0.0.1:9", access_key="k", secret_key="s")):
        first, second = submit.data_fingerprint("minio://mlpipeline/data"), submit.data_fingerprint("minio://mlpipeline/data")
    assert first.startswith("unlisted-") and first != second  # never a cache hit on unknown data
    assert "note: minio://mlpipeline/data at http://127.0.0.1:9: " in capsys.readouterr().out


class _FakeRuns:
    """Stands in for kfp.Client.get_run: a run whose tasks move through states, then end."""

    def __init__(self, final):
        task = lambda name, state: NS(display_name=name, state=state)  # noqa: E731
        self.states = [
            NS(state="RUNNING", run_details=NS(task_details=[task("ExampleGen", "RUNNING")])),
            NS(state="RUNNING", run_details=NS(task_details=[task("ExampleGen", "SUCCEEDED"), task("Trainer", "RUNNING")])),
            NS(state=final, run_details=NS(task_details=[task("ExampleGen", "SUCCEEDED"), task("Trainer", final)])),
        ]

    def get_run(self, run_id):
        assert run_id == "run-1"
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


@pytest.mark.parametrize("final, code", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_wait_prints_each_task_state_change_and_exits_by_the_outcome(final, code, capsys, monkeypatch):
    from kubeflow import submit  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(submit.time, "sleep", lambda _: None)
    assert submit._follow(_FakeRuns(final), "run-1", timeout=60) == code  # pylint: disable=protected-access
    lines = capsys.readouterr().out.splitlines()
    changes = [" ".join(l.split()[1:]) for l in lines if l.startswith("  ")]
    assert changes == ["ExampleGen RUNNING", "ExampleGen SUCCEEDED", "Trainer RUNNING", f"Trainer {final}"]
    assert lines[-1] == f"run run-1: {final}"


def _serve(handler):
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def test_a_token_file_with_a_line_break_inside_is_refused_without_showing_it(package, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("SECRET\nX\n")
    out = _submit("--host", "http://127.0.0.1:9", "--package", package, "--token-file", str(token_file))
    assert out.returncode == 1
    assert out.stdout.strip() == f"error: {token_file}: the token file must hold one token on one line (visible ASCII, no spaces)"
    assert "SECRET" not in out.stdout + out.stderr


def test_the_token_never_follows_a_redirect_to_another_host(package, tmp_path):
    received = []

    class _Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            received.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    other, other_url = _serve(_Other)

    class _Redirects(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", other_url + "/apis/v2beta1/healthz")
            self.end_headers()

        def log_message(self, *args):
            pass

    server, host = _serve(_Redirects)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    try:
        out = _submit("--host", host, "--package", package, "--token-file", str(token_file))
    finally:
        server.shutdown()
        other.shutdown()
    assert out.returncode == 1
    assert out.stdout.strip() == (f"error: {host}: answered HTTP 302, a redirect to {other_url}/apis/v2beta1/healthz; "
                                  f"the token is sent only to --host, so pass the final address as --host")
    assert received == [] and TOKEN not in out.stdout + out.stderr


def test_a_failing_api_is_one_line_at_once(package):
    class _Fails(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server, host = _serve(_Fails)
    try:
        out = _submit("--host", host, "--package", package)
    finally:
        server.shutdown()
    assert out.returncode == 1
    assert out.stdout.strip() == f"error: {host}: the KFP API is failing (HTTP 500 from its health check)"
    assert "Traceback" not in out.stderr


# -- after --wait: the InferenceService of the pushed model ------------------------------------

class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class _FakeKfpClient:
    """Stands in for kfp.Client: the run is created, then moves through _FakeRuns' states."""

    final = "SUCCEEDED"

    def __init__(self, **kwargs):
        self.runs = _FakeRuns(self.final)

    def create_run_from_pipeline_package(self, *args, **kwargs):
        return NS(run_id="run-1")

    def get_run(self, run_id):
        return self.runs.get_run(run_id)


def _push_with_manifest(tmp_path, serving_dir, manifest=True):
    model = tmp_path / f"model-{len(os.listdir(tmp_path))}"
    model.mkdir()
    (model / "saved_model.pb").write_text("graph")
    version = version_dirs.push(str(model), serving_dir, {"model_uri": str(model)})
    if manifest:
        kserve_manifests.write_manifest(serving_dir, version, kserve_manifests.inference_service(serving_dir, version=version,
                                                                             pipeline_run="run-1"))
    return version


@pytest.mark.parametrize("final", ["SUCCEEDED", "FAILED"])
def test_wait_prints_the_newest_versions_inferenceservice_after_a_successful_run(final, package, tmp_path,
                                                                                monkeypatch, capsys):
    import kfp  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    from kubeflow import runner, submit  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(kfp, "Client", type("Client", (_FakeKfpClient,), {"final": final}))
    monkeypatch.setattr(submit.time, "sleep", lambda _: None)
    server, host = _serve(_Healthy)
    serving_dir = "minio://mlpipeline/v2/artifacts/serving_model"  # the package's Pusher pushes there
    try:
        with fixtures.stand_in_store("minio://mlpipeline"):
            version = _push_with_manifest(tmp_path, serving_dir)
            code = submit.submit(runner.parse(["submit", "--host", host, "--package", package, "--wait"]))
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    if final == "FAILED":
        assert code == 1 and "InferenceService" not in out
        return
    assert code == 0
    head, text = out.split(f"InferenceService of version {version} ({serving_dir}/{version}/inferenceservice.yaml):\n")
    assert head.splitlines()[-1] == "run run-1: SUCCEEDED"
    manifest_text, hint = text.rstrip("\n").rsplit("\n", 1)
    manifest = yaml.safe_load(manifest_text)
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["annotations"]["signs-pipeline/version"] == str(version)
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/serving_model"
    assert hint == (f"to serve it: python kubeflow/runner.py deploy --package {package} [--namespace NS], "
                    f"or pipe the YAML above into kubectl apply -n NS -f -")


def test_after_a_run_an_unreachable_store_is_one_line_saying_where_the_manifest_lies(capsys):
    from kubeflow import submit  # pylint: disable=import-outside-toplevel
    with storage.configured(stores.StoreSettings(minio_endpoint="http://127.0.0.1:9", access_key="k", secret_key="s")):
        submit.show_manifest({"defaultPipelineRoot": "minio://mlpipeline/v2/artifacts"}, "pipeline.yaml")
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("note: the InferenceService manifest lies in minio://mlpipeline/v2/artifacts/serving_model/"
                           "<newest version>/inferenceservice.yaml; not readable from here (minio://mlpipeline/v2/"
                           "artifacts/serving_model at http://127.0.0.1:9: ")


def test_after_a_run_a_version_without_a_manifest_or_no_version_is_one_line(tmp_path, capsys):
    from kubeflow import submit  # pylint: disable=import-outside-toplevel
    root = f"minio://mlpipeline/{tmp_path.name}"
    with fixtures.stand_in_store("minio://mlpipeline"):
        submit.show_manifest({"defaultPipelineRoot": root}, "pipeline.yaml")
        version = _push_with_manifest(tmp_path, f"{root}/serving_model", manifest=False)
        submit.show_manifest({"defaultPipelineRoot": root}, "pipeline.yaml")
    assert capsys.readouterr().out.splitlines() == [
        f"note: {root}/serving_model: no model pushed there yet, so no InferenceService to show",
        f"note: {root}/serving_model/{version}/inferenceservice.yaml: no InferenceService manifest there; "
        f"`python kubeflow/runner.py deploy --package pipeline.yaml --dry-run` prints one"]


class _RecordingClient(_FakeKfpClient):
    """Records what `submit` sends, as kfp.Client would send it to the API server."""

    sent = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _RecordingClient.sent = {"client": kwargs}

    def create_run_from_pipeline_package(self, *args, **kwargs):
        _RecordingClient.sent["run"] = kwargs
        return super().create_run_from_pipeline_package(*args, **kwargs)


@pytest.mark.parametrize("override", [None, "minio://mlpipeline/other"])
def test_the_run_is_sent_with_the_packages_root(override, package, monkeypatch, capsys):
    """Point 2: the backend never reads the spec's defaultPipelineRoot (driver/root_dag.go), so submit sends it."""
    import kfp  # pylint: disable=import-outside-toplevel
    from kubeflow import runner, submit  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(kfp, "Client", _RecordingClient)
    server, host = _serve(_Healthy)
    try:
        args = ["submit", "--host", host, "--package", package] + (["--pipeline-root", override] if override else [])
        assert submit.submit(runner.parse(args)) == 0
    finally:
        server.shutdown()
    root = override or "minio://mlpipeline/v2/artifacts"
    assert _RecordingClient.sent["run"]["pipeline_root"] == root
    source = "--pipeline-root" if override else "the package's"
    assert f"  pipeline root {root} ({source})" in capsys.readouterr().out.splitlines()


def test_an_api_that_answers_no_run_id_is_an_error(package, monkeypatch, capsys):
    import kfp  # pylint: disable=import-outside-toplevel
    from kubeflow import runner, submit  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(kfp, "Client", type("Client", (_FakeKfpClient,), {
        "create_run_from_pipeline_package": lambda self, *a, **k: NS(run_id=None)}))
    server, host = _serve(_Healthy)
    try:
        assert submit.submit(runner.parse(["submit", "--host", host, "--package", package])) == 1
    finally:
        server.shutdown()
    assert capsys.readouterr().out.strip().endswith("the KFP API accepted the run but answered no run id")
