"""The SIGNS pipeline on open-source Kubeflow Pipelines 2.x: compile, submit, or prove a package here.

    python kubeflow/runner.py compile  --image REGISTRY/signs-pipeline:TAG [--kfp-release 2.17] [--namespace NS] [--gpus 1]
    python kubeflow/runner.py submit   --host URL [--package pipeline.yaml] [--param epochs=20] [--wait]
    python kubeflow/runner.py run-local pipeline.yaml --local-store [--kfp-release 2.17-multi-user] [--param NAME=VALUE]
    python kubeflow/runner.py deploy   [--package pipeline.yaml | --serving-dir URL] [--namespace NS] [--dry-run]
"""

import argparse
import dataclasses
import sys

from common import flags
from components.data import startup, stores
from kubeflow import compile as kfp_compile, deploy, run_local, submit
from kubeflow.compile import CompileConfig
from kubeflow.deploy import DeployConfig
from kubeflow.run_local import RunLocalConfig
from kubeflow.submit import SubmitConfig
from pipeline import options


COMMANDS = {  # each command's settings, by name: its flags are made from the fields
    "compile": (CompileConfig, "write the PipelineSpec YAML"),
    "submit": (SubmitConfig, "submit a compiled package to a KFP 2.x cluster"),
    "run-local": (RunLocalConfig, "run every task of a compiled package on this machine"),
    "deploy": (DeployConfig, "serve the pushed model with KServe: apply its InferenceService"),
}
_SAYS_DEFAULTS = ("compile", "deploy")  # the others' help texts say their defaults themselves
_EXCLUSIVE = {"deploy": ("kubeconfig", "in_cluster")}  # flags of which one at most is given


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (config, help_text) in COMMANDS.items():
        p = sub.add_parser(command, help=help_text, formatter_class=(
            argparse.ArgumentDefaultsHelpFormatter if command in _SAYS_DEFAULTS else argparse.HelpFormatter))
        exclusive = _EXCLUSIVE.get(command, ())
        flags.add_flags(p, config, skip=exclusive)
        if exclusive:
            flags.add_flags(p.add_mutually_exclusive_group(), config, only=exclusive)
        if config is CompileConfig:  # the settings both runners share: a runtime one sets its parameter's default
            options.add_flags(p, kubeflow=True)
    return parser


def parse(argv=None):
    """The settings of the command `argv` names: a CompileConfig, SubmitConfig, RunLocalConfig or DeployConfig."""
    args = build_parser().parse_args(argv)
    config, _ = COMMANDS[args.command]
    values = flags.values(config, args)
    if config is CompileConfig:
        values["pipeline"] = options.config_from_args(args)
    return config(**values)


def _compile(config: CompileConfig) -> int:
    try:
        launcher = stores.LauncherConfig(release=config.kfp_release)
        if config.launcher_config:
            with open(config.launcher_config, encoding="utf-8") as f:
                launcher = stores.parse_configmap(f.read(), config.launcher_config, config.kfp_release)
        config = dataclasses.replace(config, launcher=launcher)
        kfp_compile.check_config(config)  # before TFX is imported
        path = kfp_compile.write(kfp_compile.build(config), config.output)
    except (kfp_compile.CompileError, stores.StoreConfigError) as e:
        print(f"error: {e}")
        return 2  # a setting the cluster would refuse
    except OSError as e:
        print(f"error: {e.filename}: {e.strerror}")
        return 2 if e.filename in (config.launcher_config, config.output) else 1
    store = launcher.session(config.root)
    print(f"wrote {path} (image {config.image}, pipeline root {config.root}, KFP {config.kfp_release}"
          f"{', namespace ' + config.namespace if config.namespace else ''}, store "
          f"{store.endpoint_url() or 'from the pod environment'}, Trainer: {config.gpus} x {config.accelerator})")
    return 0


def main(argv=None) -> int:
    config = parse(argv)
    startup.start_process()
    if isinstance(config, CompileConfig):
        return _compile(config)
    if isinstance(config, SubmitConfig):
        return submit.submit(config)
    if isinstance(config, DeployConfig):
        return deploy.deploy(config)
    return run_local.run(config)


if __name__ == "__main__":
    sys.exit(main())
