"""`kubeflow/runner.py deploy`: serves the pushed model with KServe on the cluster.

The InferenceService comes from `components.push.kserve_manifests`; the kubernetes client's
CustomObjectsApi creates it (POST .../namespaces/NS/inferenceservices) or, when one of that name
is there already (HTTP 409), merge-patches it (PATCH .../inferenceservices/NAME,
application/merge-patch+json). Every outcome is one line on stdout; the token is never printed.
"""

import dataclasses
import os
import re
import sys
from typing import Any, Dict, Optional, Tuple
import json

from common.flags import setting
from common.redact import redact
from components.push import kserve_manifests
from components.data import storage
from components.data import stores
from components.data.layout import PipelineRoot
from components.push import version_dirs

IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
REQUEST_TIMEOUT = (10, 60)  # seconds to connect, to read: an unreachable API server fails fast
FIELD_MANAGER = "signs-pipeline"


class DeployError(Exception):
    """A one-line reason the deployment could not go ahead."""


def package_serving_dir(spec: Dict[str, Any]) -> str:
    """Where a compiled package's Pusher pushes: `<defaultPipelineRoot>/serving_model`, as compile
    derives it (`PipelineRoot.serving_dir`; `submit --pipeline-root` moves KFP's artifacts, not it)."""
    root = spec.get("defaultPipelineRoot")
    if not root:
        raise DeployError("the package names no defaultPipelineRoot; pass --serving-dir")
    return PipelineRoot(root).serving_dir


def package_launcher(spec: Dict[str, Any]):
    """The launcher config (KFP release, providers, namespace) a compiled package's tasks carry, or None."""
    for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
        config = stores.from_environment({e.get("name"): e.get("value") for e in executor.get("container", {}).get("env", [])})
        if config is not None:
            return config
    return None


def _load_package(path: str) -> Dict[str, Any]:
    if not os.path.exists(path):
        raise DeployError(f"{path}: no such package; pass --serving-dir or --package")
    from kubeflow import compile as kfp_compile  # pylint: disable=import-outside-toplevel
    try:
        return kfp_compile.load(path)
    except (OSError, ValueError, IndexError, AttributeError) as e:
        raise DeployError(f"{path}: not a compiled package ({type(e).__name__})") from None


def serving_dir_of_package(path: str) -> str:
    return package_serving_dir(_load_package(path))


def newest_pushed(serving_dir: str) -> Tuple[Optional[int], str]:
    """The newest pushed version if the store answers from here, else None and the reason.

    Raises:
      DeployError: the store answers and holds no version: KServe would have nothing to serve.
    """
    try:
        version = version_dirs.newest_version(serving_dir)
    except storage.StorageError as e:
        return None, str(e)
    if version is None:
        raise DeployError(f"{serving_dir}: no model pushed there yet; nothing to serve")
    return version, ""


class KServeCluster:
    """An API client for one cluster, and what messages need to say about it."""

    def __init__(self, kubeconfig: Optional[str] = None, context: Optional[str] = None, in_cluster: bool = False):
        # pylint: disable=import-outside-toplevel
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
                self.namespace = _read(IN_CLUSTER_NAMESPACE) or "default"
            else:
                config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=configuration, persist_config=False)
                self.namespace = _context_namespace(kubeconfig, context)
        except (ConfigException, OSError, ValueError) as e:
            where = "in-cluster config" if in_cluster else f"kubeconfig {kubeconfig or '(default: $KUBECONFIG or ~/.kube/config)'}"
            raise DeployError(f"{where}: {_first_line(e)}") from None
        configuration.retries = 0  # urllib3 would try an unreachable server 3 more times
        self.host = configuration.host
        self.secrets = [v.split(" ", 1)[-1] for v in configuration.api_key.values()] + list(configuration.api_key.values())
        self.api = client.CustomObjectsApi(client.ApiClient(configuration))

    def apply(self, manifest: Dict[str, Any]) -> str:
        """Creates the InferenceService, or merge-patches it if it is there; returns 'created' or 'updated'."""
        from kubernetes.client.exceptions import ApiException  # pylint: disable=import-outside-toplevel
        import urllib3  # pylint: disable=import-outside-toplevel

        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        where = (kserve_manifests.GROUP, kserve_manifests.VERSION, namespace, kserve_manifests.PLURAL)
        try:
            try:
                self.api.create_namespaced_custom_object(*where, manifest, field_manager=FIELD_MANAGER,
                                                         _request_timeout=REQUEST_TIMEOUT)
                return "created"
            except ApiException as e:
                if e.status != 409:
                    raise
            self.api.patch_namespaced_custom_object(*where, name, manifest, field_manager=FIELD_MANAGER,
                                                    _request_timeout=REQUEST_TIMEOUT)
            return "updated"
        except ApiException as e:
            raise DeployError(redact(self._api_error(e, namespace), self.secrets)) from None
        except urllib3.exceptions.HTTPError as e:
            raise DeployError(redact(f"{self.host}: unreachable ({_reason(e)})", self.secrets)) from None

    def _api_error(self, e, namespace: str) -> str:
        status = _status(e.body)
        message = _first_line(status.get("message") or e.reason or "")
        if e.status == 401:
            return f"{self.host}: the credentials were refused (HTTP 401)"
        if e.status == 403:
            return f"{self.host}: forbidden (HTTP 403): {message}"
        if e.status == 404 and (status.get("details") or {}).get("kind") == "namespaces":
            return f"{self.host}: namespace {namespace} not found (HTTP 404)"
        if e.status == 404:
            return (f"{self.host}: no {kserve_manifests.PLURAL}.{kserve_manifests.GROUP}/{kserve_manifests.VERSION} API there (HTTP 404): "
                    f"is KServe installed? (kubectl get crd {kserve_manifests.PLURAL}.{kserve_manifests.GROUP})")
        return f"{self.host}: HTTP {e.status} {e.reason or ''}: {message}".replace(" :", ":")


def _status(body) -> Dict[str, Any]:
    """The Kubernetes Status object of an error answer ({} if the body is not one)."""
    try:
        status = json.loads(body.decode() if isinstance(body, bytes) else body or "")
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def _first_line(e) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _reason(e) -> str:
    """urllib3's reason without its object reprs: '[Errno 111] Connection refused', 'timed out', ..."""
    reason = getattr(e, "reason", None) or e
    text = _first_line(reason)
    text = text.split("Failed to establish a new connection: ", 1)[-1]
    return re.sub(r"<[^>]* object at 0x[0-9a-f]+>:? ?", "", text).strip(" :(") or type(reason).__name__


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _context_namespace(kubeconfig: Optional[str], context: Optional[str]) -> str:
    """The namespace the kubeconfig's (chosen) context names, 'default' if none, as kubectl does."""
    from kubernetes import config  # pylint: disable=import-outside-toplevel
    contexts, current = config.list_kube_config_contexts(kubeconfig)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    return ((chosen or {}).get("context") or {}).get("namespace") or "default"


# Who KFP's own store (SeaweedFS, from 2.16.0) lets in, by its NetworkPolicy: profile namespaces,
# kubeflow and istio-system. A storage initializer elsewhere cannot connect, and the
# InferenceService never becomes Ready.
STORE_ADMITS = ("kubeflow", "istio-system")


def store_admits(serving_dir: str, namespace: str, launcher) -> str:
    """Why an InferenceService in `namespace` may not reach the serving dir ('' if it may, as far
    as the package says): a namespace other than the package's profile on KFP's SeaweedFS store."""
    if not serving_dir.startswith("minio://") or launcher is None:
        return ""
    release = stores.release(launcher.release)
    if "seaweedfs" not in release.minio_endpoint or namespace in STORE_ADMITS or namespace == launcher.namespace:
        return ""
    return (f"namespace {namespace}: KFP {release.name}'s store ({release.minio_endpoint}) admits only Kubeflow "
            f"profile namespaces, kubeflow and istio-system (its NetworkPolicy); unless {namespace} is a profile, "
            f"the storage initializer cannot reach {serving_dir} and the InferenceService never becomes Ready "
            f"(deploy into {launcher.namespace or 'the profile namespace'}, or serve from a bucket of your own)")


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """What `deploy` needs; `kubeflow/runner.py deploy` makes its flags from these fields."""

    package: str = setting("pipeline.yaml", "the compiled pipeline whose serving dir to serve")
    serving_dir: Optional[str] = setting(None, "the TF Serving base directory (gs://, s3://, minio://); default: where "
                                               "the package's Pusher pushes, <pipeline-root>/serving_model")
    name: str = setting("signs", "the InferenceService's name, and TF Serving's model name")
    namespace: Optional[str] = setting(None, "default: the package's profile namespace, else the kubeconfig context's "
                                             "(in a pod: its own); KFP's own store admits only profile namespaces, "
                                             "kubeflow and istio-system")
    service_account: Optional[str] = setting(None, "the predictor's ServiceAccount, which carries the store's "
                                                   "credentials; default: signs-kserve for minio:// (see "
                                                   "--credentials-setup), the namespace's default otherwise ('' for none)")
    kubeconfig: Optional[str] = setting(None, "default: $KUBECONFIG or ~/.kube/config")
    in_cluster: bool = setting(False, "use the pod's own ServiceAccount", action="store_true")
    context: Optional[str] = setting(None, "a kubeconfig context other than the current one")
    dry_run: bool = setting(False, "print the manifest (for kubectl apply -f -) and touch no cluster", action="store_true")
    credentials_setup: bool = setting(False, "print the ServiceAccount and S3 Secret a minio:// or s3:// serving dir "
                                             "needs once per namespace, with the commands that fill in its keys, "
                                             "and exit", action="store_true")


def manifest_for(config: DeployConfig, version: Optional[int]) -> Dict[str, Any]:
    try:
        return kserve_manifests.inference_service(config.serving_dir, name=config.name, namespace=config.namespace,
                                                  service_account=config.service_account, version=version)
    except kserve_manifests.ManifestError as e:  # deploy() has refused unknown schemes already
        raise DeployError(str(e)) from None


def deploy(config: DeployConfig) -> int:
    """`kubeflow/runner.py deploy`: returns the exit code."""
    try:
        if not config.serving_dir:
            config = dataclasses.replace(config, serving_dir=serving_dir_of_package(config.package))
        serving_dir = config.serving_dir
        try:
            kserve_manifests.storage_uri(serving_dir)  # refuses local and unknown roots before any store is asked
        except (kserve_manifests.ManifestError, storage.StorageError) as e:
            raise DeployError(str(e)) from None
        launcher = package_launcher(_load_package(config.package)) if os.path.exists(config.package) else None
        config = dataclasses.replace(config, namespace=config.namespace or (launcher.namespace if launcher else "") or None)
        if config.credentials_setup:
            try:
                session = launcher.session(serving_dir) if launcher else None
                print(kserve_manifests.credentials_setup(serving_dir, config.namespace,
                                                         config.service_account or kserve_manifests.DEFAULT_SERVICE_ACCOUNT,
                                                         source_namespace=(launcher and launcher.namespace) or "kubeflow",
                                                         session=session), end="")
            except (kserve_manifests.ManifestError, ValueError) as e:
                raise DeployError(str(e)) from None
            return 0
        version, why = newest_pushed(serving_dir)
        if config.dry_run:
            if version is None:
                print(f"note: no version label: {why}", file=sys.stderr)
            print(kserve_manifests.to_yaml(manifest_for(config, version)), end="")
            return 0
        cluster = KServeCluster(config.kubeconfig, config.context, config.in_cluster)
        config = dataclasses.replace(config, namespace=config.namespace or cluster.namespace)
        note = store_admits(serving_dir, config.namespace, launcher)
        if note:
            print(f"warning: {note}", file=sys.stderr)
        manifest = manifest_for(config, version)
        done = cluster.apply(manifest)
        served = f"version {version}" if version is not None else "newest version: the store is not readable from here"
        print(f"{done} InferenceService {config.namespace}/{config.name} on {cluster.host} "
              f"({manifest['spec']['predictor']['model']['storageUri']}, {served})")
        return 0
    except DeployError as e:
        print(f"error: {e}")
        return 1
