"""Namespaces on Kubeflow: what `submit` and `deploy` do with a profile namespace (multi-user KFP).

The stand-ins are submit_test's (a recording `kfp.Client`, a healthy KFP API) and deploy_test's
(a Kubernetes API server, a minio:// serving dir on moto).
"""

from kubeflow.deploy_test import COLLECTION, _deploy, api, pushed  # noqa: F401  pylint: disable=unused-import
from kubeflow.submit_test import _Healthy, _RecordingClient, _serve, package  # noqa: F401  pylint: disable=unused-import


def test_a_package_for_a_namespace_goes_to_that_namespace_and_its_root(tmp_path, monkeypatch, capsys):
    import kfp  # pylint: disable=import-outside-toplevel
    from kubeflow import compile as kfp_compile, runner, submit  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(kfp, "Client", _RecordingClient)
    path = kfp_compile.write(kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs:1",
                                                                         namespace="team-a")), str(tmp_path / "p.yaml"))
    server, host = _serve(_Healthy)
    try:
        assert submit.submit(runner.parse(["submit", "--host", host, "--package", path])) == 0
        code = submit.submit(runner.parse(["submit", "--host", host, "--package", path,
                                                               "--pipeline-root", "minio://mlpipeline/v2/artifacts"]))
    finally:
        server.shutdown()
    assert _RecordingClient.sent["run"]["namespace"] == "team-a"
    out = capsys.readouterr().out.splitlines()
    assert "  pipeline root minio://mlpipeline/private-artifacts/team-a/v2/artifacts (the package's), namespace team-a" in out
    assert code == 1 and out[-1].startswith("error: --pipeline-root minio://mlpipeline/v2/artifacts: outside what "
                                            "namespace team-a's keys may touch")


def test_a_namespace_given_at_submit_is_checked_against_the_root_and_the_package(tmp_path, package, capsys):
    """`submit --namespace NS` took a package compiled for no namespace (or another), and the run's
    first upload outside private-artifacts/NS/ was AccessDenied."""
    from kubeflow import compile as kfp_compile, runner, submit  # pylint: disable=import-outside-toplevel
    code = submit.submit(runner.parse(["submit", "--host", "http://127.0.0.1:9", "--package",
                                                           package, "--namespace", "team-b"]))
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and out[-1].startswith("error: --pipeline-root minio://mlpipeline/v2/artifacts: outside what "
                                            "namespace team-b's keys may touch")
    other = kfp_compile.write(kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs:1",
                                                                          namespace="team-a")), str(tmp_path / "a.yaml"))
    code = submit.submit(runner.parse(["submit", "--host", "http://127.0.0.1:9", "--package",
                                                           other, "--namespace", "team-b"]))
    assert code == 1 and capsys.readouterr().out.splitlines()[-1] == (
        "error: --namespace team-b: the package was compiled for namespace team-a (its tasks' store keys and paths "
        "are that profile's); recompile with --namespace team-b")


def test_deploy_defaults_to_the_packages_namespace_and_says_what_the_store_admits(api, pushed, tmp_path):
    """deploy used the kubeconfig's namespace; SeaweedFS's NetworkPolicy admits only profile
    namespaces, kubeflow and istio-system, so the InferenceService never became Ready, unwarned."""
    from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
    package = kfp_compile.write(kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs:1",
                                                                            namespace="team-a")),
                                str(tmp_path / "p.yaml"))
    api.namespaces.update({"team-a", "serving"})
    out = _deploy("--package", package, "--serving-dir", pushed.serving_dir, "--kubeconfig", api.kubeconfig,
                  env=pushed.env)
    assert out.returncode == 0 and api.requests[0]["path"] == COLLECTION.format("team-a")
    assert "warning" not in out.stderr
    out = _deploy("--package", package, "--serving-dir", pushed.serving_dir, "--kubeconfig", api.kubeconfig,
                  "--namespace", "serving", env=pushed.env)
    assert out.returncode == 0 and api.requests[-1]["path"].startswith(COLLECTION.format("serving"))
    assert out.stderr.startswith("warning: namespace serving: KFP 2.17's store (seaweedfs.kubeflow:9000) admits only "
                                 "Kubeflow profile namespaces, kubeflow and istio-system")
