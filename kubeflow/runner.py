"""The SIGNS pipeline on open-source Kubeflow Pipelines 2.x: compile, submit, or prove a package here.

    python kubeflow/runner.py compile  --image REGISTRY/signs-pipeline:TAG [--kfp-release 2.17] [--namespace NS] [--gpus 1]
    python kubeflow/runner.py submit   --host URL [--package pipeline.yaml] [--param epochs=20] [--wait]
    python kubeflow/runner.py run-local pipeline.yaml --local-store [--kfp-release 2.17-multi-user] [--param NAME=VALUE]
    python kubeflow/runner.py deploy   [--package pipeline.yaml | --serving-dir URL] [--namespace NS] [--dry-run]
"""

import argparse
import os
import sys
from importlib import metadata

from components.data import stores
from kubeflow.compile import CompileConfig
from pipeline import options
from components.data import startup


def _version() -> str:
    try:
        return metadata.version("signs-pipeline")
    except metadata.PackageNotFoundError:
        return "dev"


def _param(text: str):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--param takes NAME=VALUE, got {text!r}")
    return name, value


def _label(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE, got {text!r}")
    return key, value


def _toleration(text: str):
    """KEY[=VALUE][:EFFECT] as (key, operator, value, effect): Equal with a value, Exists without."""
    rest, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, sep, value = rest.partition("=")
    return key, "Equal" if sep else "Exists", value, effect


def build_parser() -> argparse.ArgumentParser:
    d = CompileConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="write the PipelineSpec YAML", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--output", default=d.output, help="the package to write")
    c.add_argument("--image", default=f"signs-pipeline:{_version()}", help="the image every task runs (kubeflow/Dockerfile)")
    c.add_argument("--pipeline-root", default="",
                   help="where every artifact goes, and under it data/, serving_model/ and checkpoints/: gs://, s3:// or "
                        "minio:// (default: the namespace's private-artifacts/<ns>/v2/artifacts with --namespace, else "
                        "--launcher-config's defaultPipelineRoot, else KFP's minio://mlpipeline/v2/artifacts)")
    c.add_argument("--kfp-release", default=stores.DEFAULT_RELEASE, choices=sorted(stores.RELEASES),
                   help="the KFP release the cluster runs: its launcher's store defaults (2.16 and newer: "
                        "seaweedfs.kubeflow:9000; older: minio-service.kubeflow:9000)")
    c.add_argument("--launcher-config", default=None, metavar="FILE",
                   help="the cluster's kfp-launcher ConfigMap (kubectl -n NS get cm kfp-launcher -o yaml): its providers "
                        "and defaultPipelineRoot are used as the launcher uses them")
    c.add_argument("--namespace", default="",
                   help="a multi-user install's profile namespace: the root goes under private-artifacts/<ns>/, where "
                        "its keys may write; a root outside that is refused")
    c.add_argument("--data-root", default="", help="default of the data_root runtime parameter (default: <pipeline-root>/data)")
    c.add_argument("--source-kind", choices=("h5_pair", "image_folder"), default=d.source_kind,
                   help="what data_root holds: a SIGNS h5 pair, or class sub-folders of images")
    c.add_argument("--gpus", type=int, default=d.gpus, help="accelerators for the Trainer (0: CPU only)")
    c.add_argument("--accelerator", default=d.accelerator, help="Kubernetes resource name of the accelerator")
    c.add_argument("--cpu", default=d.cpu, help="CPU request of each task")
    c.add_argument("--memory", default=d.memory, help="memory request of each task (G, Gi, M, Mi)")
    c.add_argument("--trainer-cpu", default=d.trainer_cpu, help="CPU request of the Trainer")
    c.add_argument("--trainer-memory", default=d.trainer_memory, help="memory request of the Trainer")
    c.add_argument("--trainer-node-selector", type=_label, action="append", default=[], metavar="LABEL=VALUE",
                   help="a node label the Trainer's pod needs (nodeSelector), repeatable, e.g. "
                        "cloud.google.com/gke-accelerator=nvidia-l4")
    c.add_argument("--trainer-toleration", type=_toleration, action="append", default=[],
                   metavar="KEY[=VALUE][:EFFECT]",
                   help="a taint the Trainer's pod tolerates, repeatable, e.g. nvidia.com/gpu=present:NoSchedule "
                        "(a tainted GPU pool leaves it Pending otherwise); no VALUE: any value (Exists)")
    c.add_argument("--kserve-name", default=d.kserve_name,
                   help="the KServe InferenceService each push on the store leaves beside the model (its TF Serving model name)")
    c.add_argument("--kserve-namespace", default=None,
                   help="its namespace (default: --namespace, else the one `deploy` or kubectl uses)")
    c.add_argument("--kserve-service-account", default=None,
                   help="its predictor's ServiceAccount (default: signs-kserve for minio:// roots, else the namespace's)")
    c.add_argument("--no-kserve", action="store_false", dest="kserve", help="write no InferenceService manifest")
    # The settings both runners share: a runtime one sets its parameter's default in the package.
    options.add_flags(c, kubeflow=True)

    s = sub.add_parser("submit", help="submit a compiled package to a KFP 2.x cluster")
    s.add_argument("--host", required=True, help="the KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow:80")
    s.add_argument("--package", default="pipeline.yaml", help="the compiled pipeline")
    s.add_argument("--namespace", default=None, help="the Kubeflow profile namespace (default: the package's --namespace)")
    s.add_argument("--experiment", default="signs", help="the experiment to run in")
    s.add_argument("--run-name", default=None, help="default: signs-<time>")
    s.add_argument("--pipeline-root", default=None,
                   help="the run's pipeline root (default: the package's, so KFP's artifacts land beside its data and models)")
    s.add_argument("--token-file", default=os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"),
                   help="a file holding the bearer token (default: $KF_PIPELINES_SA_TOKEN_PATH)")
    s.add_argument("--param", type=_param, action="append", default=[], help="NAME=VALUE, repeatable")
    s.add_argument("--wait", action="store_true", help="follow the run until it ends; exit 1 if it fails")
    s.add_argument("--timeout", type=int, default=24 * 3600, help="seconds --wait waits")

    r = sub.add_parser("run-local", help="run every task of a compiled package on this machine")
    r.add_argument("package", help="the compiled pipeline.yaml")
    r.add_argument("--param", type=_param, action="append", default=[], help="NAME=VALUE, repeatable")
    r.add_argument("--work-dir", default="kfp_local", help="where task logs, executor inputs and the launcher's local copies go")
    r.add_argument("--pipeline-root", default=None, help="the run's pipeline root (default: the package's)")
    r.add_argument("--local-store", action="store_true",
                   help="start a stand-in object store on 127.0.0.1 for the root and the release's store service "
                        "(S3 for minio:// and s3://, GCS for gs://), with the secrets a cluster would hold")
    r.add_argument("--kfp-release", default=None, choices=sorted(stores.RELEASES),
                   help="the backend release to play (default: the package's); 2.17-multi-user needs the package's "
                        "--namespace and plays its key prefixes")
    r.add_argument("--data", default=None, metavar="DIR",
                   help="with --local-store: upload DIR to the run's data_root first, as you would to the cluster's store")
    r.add_argument("--no-publish-logs", action="store_false", dest="publish_logs",
                   help="play a backend whose admin turned publishing logs off (no executor-logs output)")
    r.add_argument("--secrets", default=None, metavar="FILE",
                   help="Kubernetes Secrets (YAML, as kubectl get secret -o yaml) standing in for the cluster's; "
                        "with --local-store the stand-in's own are used")
    _add_deploy(sub)
    return p


def _add_deploy(sub) -> None:
    k = sub.add_parser("deploy", help="serve the pushed model with KServe: apply its InferenceService",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    k.add_argument("--package", default="pipeline.yaml", help="the compiled pipeline whose serving dir to serve")
    k.add_argument("--serving-dir", default=None,
                   help="the TF Serving base directory (gs://, s3://, minio://); default: where the package's Pusher pushes, "
                        "<pipeline-root>/serving_model")
    k.add_argument("--name", default="signs", help="the InferenceService's name, and TF Serving's model name")
    k.add_argument("--namespace", default=None,
                   help="default: the package's profile namespace, else the kubeconfig context's (in a pod: its own); "
                        "KFP's own store admits only profile namespaces, kubeflow and istio-system")
    k.add_argument("--service-account", default=None,
                   help="the predictor's ServiceAccount, which carries the store's credentials; default: signs-kserve for "
                        "minio:// (see --credentials-setup), the namespace's default otherwise ('' for none)")
    where = k.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    where.add_argument("--in-cluster", action="store_true", help="use the pod's own ServiceAccount")
    k.add_argument("--context", default=None, help="a kubeconfig context other than the current one")
    k.add_argument("--dry-run", action="store_true", help="print the manifest (for kubectl apply -f -) and touch no cluster")
    k.add_argument("--credentials-setup", action="store_true",
                   help="print the ServiceAccount and S3 Secret a minio:// or s3:// serving dir needs once per namespace, "
                        "with the commands that fill in its keys, and exit")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    startup.start_process()
    if args.command == "compile":
        from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
        try:
            launcher = stores.LauncherConfig(release=args.kfp_release)
            if args.launcher_config:
                with open(args.launcher_config, encoding="utf-8") as f:
                    launcher = stores.parse_configmap(f.read(), args.launcher_config, args.kfp_release)
            config = CompileConfig(
                pipeline=options.config_from_args(args), output=args.output, image=args.image,
                pipeline_root=args.pipeline_root, data_root=args.data_root, source_kind=args.source_kind,
                gpus=args.gpus, accelerator=args.accelerator, cpu=args.cpu, memory=args.memory,
                trainer_cpu=args.trainer_cpu, trainer_memory=args.trainer_memory, launcher=launcher,
                trainer_node_selector=tuple(args.trainer_node_selector),
                trainer_tolerations=tuple(args.trainer_toleration),
                namespace=args.namespace, kserve=args.kserve, kserve_name=args.kserve_name,
                kserve_namespace=args.kserve_namespace or args.namespace or None,
                kserve_service_account=args.kserve_service_account)
            kfp_compile.check_config(config)  # before TFX is imported
            path = kfp_compile.write(kfp_compile.build(config), args.output)
        except (kfp_compile.CompileError, stores.StoreConfigError) as e:
            print(f"error: {e}")
            return 2  # a setting the cluster would refuse
        except OSError as e:
            print(f"error: {e.filename}: {e.strerror}")
            return 2 if e.filename in (args.launcher_config, args.output) else 1
        store = launcher.session(config.root)
        print(f"wrote {path} (image {args.image}, pipeline root {config.root}, KFP {args.kfp_release}"
              f"{', namespace ' + args.namespace if args.namespace else ''}, store "
              f"{store.endpoint_url() or 'from the pod environment'}, Trainer: {args.gpus} x {args.accelerator})")
        return 0
    if args.command == "submit":
        from kubeflow import submit  # pylint: disable=import-outside-toplevel
        return submit.submit(args)
    if args.command == "deploy":
        from kubeflow import deploy  # pylint: disable=import-outside-toplevel
        return deploy.deploy(args)
    from kubeflow import run_local  # pylint: disable=import-outside-toplevel
    return run_local.run(args.package, dict(args.param), args.work_dir, args.pipeline_root, args.local_store,
                         kfp_release=args.kfp_release, secrets_file=args.secrets, data=args.data,
                         publish_logs=args.publish_logs)


if __name__ == "__main__":
    sys.exit(main())
