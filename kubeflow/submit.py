"""Submits a compiled package to a Kubeflow Pipelines 2.x cluster and, with --wait, follows the run.

Every failure is one line on stdout and a non-zero exit; the bearer token is never printed.
"""

import dataclasses
import os
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Set, Tuple

from common import flags
from common.flags import setting
from common.redact import redact
from components.data import storage
from components.push import kserve_manifests, version_dirs
from kubeflow import deploy

TERMINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED"}


class SubmitError(Exception):
    """A one-line reason the submission could not go ahead."""


def _token(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    try:
        with open(path) as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SubmitError(f"{path}: cannot read the token file ({getattr(e, 'strerror', None) or 'not text'})") from None
    # An HTTP header takes one line of visible ASCII; anything else would end up in an error message.
    if not token or not all(33 <= ord(c) <= 126 for c in token):
        raise SubmitError(f"{path}: the token file must hold one token on one line (visible ASCII, no spaces)")
    return token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: urllib would send the Authorization header on to the new location."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise SubmitError(f"{req.full_url.rsplit('/apis/', 1)[0]}: answered HTTP {code}, a redirect to {newurl}; "
                          f"the token is sent only to --host, so pass the final address as --host")


def _check_host(host: str, token: Optional[str]) -> None:
    """Fails fast (10 s) on an unreachable host or a refused token, before kfp's own retries."""
    request = urllib.request.Request(host.rstrip("/") + "/apis/v2beta1/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        urllib.request.build_opener(_NoRedirects).open(request, timeout=10).close()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise SubmitError(f"{host}: the token was refused (HTTP {e.code})") from None
        if e.code >= 500:
            raise SubmitError(f"{host}: the KFP API is failing (HTTP {e.code} from its health check)") from None
        # Other answers (404 from a proxy, say) still mean the host is there; kfp will tell more.
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SubmitError(f"{host}: unreachable ({reason})") from e


def check_image(image: str) -> None:
    """Raises SubmitError unless the image names a registry a cluster can pull from."""
    first = image.split("/", 1)[0]
    if "/" not in image or not ("." in first or ":" in first or first == "localhost"):
        raise SubmitError(f"the package's image {image} names no registry a cluster can pull from; "
                          f"push it and compile with --image REGISTRY/{image.rsplit('/', 1)[-1]}")


def images(spec: Dict[str, Any]) -> Set[str]:
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}


def data_fingerprint(data_root: str) -> str:
    """ExampleGen's cache key: a fingerprint of the files under data_root, or a fresh value.

    The store may not be reachable from where `submit` runs; then the value is unique, so KFP's
    cache never answers ExampleGen with another data set's examples (it reruns instead).
    """
    try:
        found = storage.fingerprint(data_root)
    except storage.StorageError as e:
        print(f"note: {e}; ExampleGen will run afresh instead of from KFP's cache")
        return f"unlisted-{time.time_ns()}"
    if not found:
        print(f"note: {data_root}: nothing there seen from here; ExampleGen will run afresh instead of from KFP's cache")
        return f"unlisted-{time.time_ns()}"
    return found


def run_root(spec: Dict[str, Any], override: Optional[str]) -> Tuple[str, str]:
    """The root a run is sent with, and where it came from.

    The backend never reads the spec's `defaultPipelineRoot` (driver/root_dag.go: the run's root,
    else the kfp-launcher ConfigMap's, else minio://mlpipeline/v2/artifacts), while the package's
    data, checkpoints and serving dir are fixed under it: so the run is always sent with it.
    """
    if override:
        return override, "--pipeline-root"
    root = spec.get("defaultPipelineRoot")
    if not root:
        raise SubmitError("the package names no pipeline root; recompile it or pass --pipeline-root")
    return root, "the package's"


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    """What `submit` needs; `kubeflow/runner.py submit` makes its flags from these fields."""

    host: str = setting(None, "the KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow:80", required=True)
    package: str = setting("pipeline.yaml", "the compiled pipeline")
    namespace: Optional[str] = setting(None, "the Kubeflow profile namespace (default: the package's --namespace)")
    experiment: str = setting("signs", "the experiment to run in")
    run_name: Optional[str] = setting(None, "default: signs-<time>")
    pipeline_root: Optional[str] = setting(None, "the run's pipeline root (default: the package's, so KFP's "
                                                 "artifacts land beside its data and models)")
    token_file: Optional[str] = setting(None, "a file holding the bearer token (default: $KF_PIPELINES_SA_TOKEN_PATH)")
    param: Tuple[Tuple[str, str], ...] = setting((), "NAME=VALUE, repeatable", parse=flags.key_value(flag_name="--param"),
                                                 action="append")
    wait: bool = setting(False, "follow the run until it ends; exit 1 if it fails", action="store_true")
    timeout: int = setting(24 * 3600, "seconds --wait waits")


def submit(args: SubmitConfig) -> int:
    """`kubeflow/runner.py submit`: returns the exit code."""
    token = None
    try:
        if not os.path.exists(args.package):
            raise SubmitError(f"{args.package}: no such package; run `python kubeflow/runner.py compile` first")
        from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
        try:
            spec = kfp_compile.load(args.package)
            params = kfp_compile.parameter_values(spec, dict(args.param))
            root, root_source = run_root(spec, args.pipeline_root)
            kfp_compile.check_root(root)
        except ValueError as e:
            raise SubmitError(str(e)) from e
        from kubeflow import deploy  # pylint: disable=import-outside-toplevel
        launcher = deploy.package_launcher(spec)
        compiled_for = launcher.namespace if launcher else ""
        namespace = args.namespace or compiled_for or None
        if args.namespace and compiled_for and args.namespace != compiled_for:
            raise SubmitError(f"--namespace {args.namespace}: the package was compiled for namespace {compiled_for} "
                              f"(its tasks' store keys and paths are that profile's); recompile with "
                              f"--namespace {args.namespace}")
        if namespace:  # a package compiled for no namespace too: the run's root must be the profile's
            from components.data import stores  # pylint: disable=import-outside-toplevel
            try:
                stores.check_namespace_root(root, namespace)
            except stores.StoreConfigError as e:
                raise SubmitError(str(e)) from None
        for image in sorted(images(spec)):
            check_image(image)
        token = _token(args.token_file or os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"))
        _check_host(args.host, token)
        if kfp_compile.FINGERPRINT in params and not params[kfp_compile.FINGERPRINT]:
            params[kfp_compile.FINGERPRINT] = data_fingerprint(params["data_root"])
        import kfp  # pylint: disable=import-outside-toplevel

        client = kfp.Client(host=args.host, namespace=namespace, existing_token=token)
        run_name = args.run_name or time.strftime("signs-%Y%m%d-%H%M%S")
        result = client.create_run_from_pipeline_package(
            args.package, arguments={k: v for k, v in params.items() if v is not None},
            run_name=run_name, experiment_name=args.experiment, namespace=namespace,
            pipeline_root=root)
        run_id = getattr(result, "run_id", None)
        if not run_id:
            raise SubmitError(f"{args.host}: the KFP API accepted the run but answered no run id")
        print(f"submitted run {run_name}: id {run_id}")
        print(f"  pipeline root {root} ({root_source}){', namespace ' + namespace if namespace else ''}")
        print(f"  {args.host.rstrip('/')}/#/runs/details/{run_id}")
        if not args.wait:
            return 0
        code = _follow(client, run_id, args.timeout)
        if code == 0:
            show_manifest(spec, args.package)
        return code
    except SubmitError as e:
        print(f"error: {redact(str(e), [token])}")
        return 1
    except Exception as e:  # pylint: disable=broad-except  (kfp's API errors: one line, no token)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {args.host}: {type(e).__name__}: {redact(first, [token])}")
        return 1


def _follow(client, run_id: str, timeout: int) -> int:
    """Prints each task's state as it changes until the run ends; 0 if it succeeded."""
    deadline, seen, state = time.time() + timeout, {}, None
    while time.time() < deadline:
        run = client.get_run(run_id)
        for task in (getattr(run.run_details, "task_details", None) or []):
            name, task_state = task.display_name, str(task.state)
            if seen.get(name) != task_state:
                seen[name] = task_state
                print(f"  {time.strftime('%H:%M:%S')}  {name:<20} {task_state}", flush=True)
        state = str(run.state)
        if state in TERMINAL:
            break
        time.sleep(10)
    else:
        print(f"error: run {run_id} still {state} after {timeout} s")
        return 1
    print(f"run {run_id}: {state}")
    return 0 if state == "SUCCEEDED" else 1


def show_manifest(spec: Dict[str, Any], package: str) -> None:
    """After a successful run: prints the KServe manifest kept in the newest pushed version, and how to apply it.

    The serving dir is on the cluster's store, which the submitting machine may not reach; then one
    line says where the manifest lies. Never raises: the run has succeeded whatever happens here.
    """
    # pylint: disable=import-outside-toplevel
    try:
        serving_dir = deploy.package_serving_dir(spec)
    except deploy.DeployError as e:
        print(f"note: {e}")
        return
    where = storage.join(serving_dir, "<newest version>", kserve_manifests.MANIFEST)
    try:
        version = version_dirs.newest_version(serving_dir)
        if version is None:
            print(f"note: {serving_dir}: no model pushed there yet, so no InferenceService to show")
            return
        where = kserve_manifests.manifest_path(serving_dir, version)
        text = kserve_manifests.read_manifest(serving_dir, version)
    except FileNotFoundError:
        print(f"note: {where}: no InferenceService manifest there; "
              f"`python kubeflow/runner.py deploy --package {package} --dry-run` prints one")
        return
    except (storage.StorageError, OSError, ValueError) as e:
        print(f"note: the InferenceService manifest lies in {where}; not readable from here ({e})")
        return
    print(f"InferenceService of version {version} ({where}):")
    print(text.rstrip("\n"))
    print(f"to serve it: python kubeflow/runner.py deploy --package {package} [--namespace NS], "
          f"or pipe the YAML above into kubectl apply -n NS -f -")
