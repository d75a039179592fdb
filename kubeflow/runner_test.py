"""`kubeflow/runner.py`: its help answers at once, and its flags map onto what each command takes."""

import os
import subprocess
import sys

import pytest

from kubeflow import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_imports_neither_tfx_nor_tensorflow():
    code = ("import sys; from kubeflow import runner; runner.build_parser().format_help(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tfx', 'tensorflow', 'kfp', 'ml_metadata'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_the_compile_flags_fill_the_compile_config():
    config = runner.parse(["compile", "--kfp-release", "2.5", "--namespace", "team-a",
                           "--gpus", "2", "--epochs", "20", "--no-kserve", "--trainer-toleration", "gpu:NoSchedule"])
    assert (config.kfp_release, config.namespace, config.gpus, config.pipeline.train.epochs, config.kserve) == (
        "2.5", "team-a", 2, 20, False)
    assert config.pipeline_root == ""  # the namespace's, the ConfigMap's or KFP's: decided by CompileConfig.root
    assert config.trainer_tolerations == (("gpu", "Exists", "", "NoSchedule"),) and config.kserve_namespace == "team-a"
    # One root: the shared settings carry the package's root and serving dir, not the local runner's defaults.
    assert config.pipeline.pipeline_root == config.root == "minio://mlpipeline/private-artifacts/team-a/v2/artifacts"
    assert config.serving_dir == config.pipeline.serving_dir == config.root + "/serving_model"


def test_each_command_fills_its_own_settings():
    assert runner.parse(["submit", "--host", "h", "--param", "epochs=3", "--wait"]) == runner.SubmitConfig(
        host="h", param=(("epochs", "3"),), wait=True)
    assert runner.parse(["run-local", "p.yaml", "--local-store", "--no-publish-logs"]) == runner.RunLocalConfig(
        package="p.yaml", local_store=True, publish_logs=False)
    assert runner.parse(["deploy", "--in-cluster", "--dry-run"]) == runner.DeployConfig(in_cluster=True, dry_run=True)
    with pytest.raises(SystemExit):
        runner.parse(["deploy", "--in-cluster", "--kubeconfig", "k"])


@pytest.mark.parametrize("argv, message", [
    (["submit", "--host", "h", "--param", "epochs"], "--param takes NAME=VALUE, got 'epochs'"),
    (["run-local", "p.yaml", "--kfp-release", "3.0"], "invalid choice: '3.0'"),
    (["compile", "--classes", "0,1,99999999999"], "argument --classes: --classes 0,1,99999999999: labels go up to 999"),
])
def test_bad_flags_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        runner.build_parser().parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
