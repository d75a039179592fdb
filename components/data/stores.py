"""Object-store endpoints and credentials, resolved as the KFP launcher resolves them.

Read from kubeflow/pipelines at 2.17.0 (commit 4a3592c, the newest release) and 2.5.0 (b13bc9e):

- `backend/src/v2/config/env.go`: the `kfp-launcher` ConfigMap of the run's namespace may hold
  `defaultPipelineRoot` and `providers` (YAML: `minio`, `s3`, `gs`, each with `default` and
  ordered `overrides` matched on bucket and key prefix, `s3.go`, `minio.go`, `gcs.go`).
- With no provider for a `minio://` root the launcher uses its defaults (`getDefaultMinioSessionInfo`):
  endpoint `seaweedfs.kubeflow:9000` from 2.16.0 (`minio-service.kubeflow:9000` before), region
  `minio`, plain http, credentials from the secret `mlpipeline-minio-artifact` (`accesskey`,
  `secretkey`). With no provider for `s3://` or `gs://` it opens the bucket "from the environment":
  the SDK's default chain (`AWS_ENDPOINT_URL_S3`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, IRSA, ...;
  Google's application default credentials).
- `driver/root_dag.go`: the run's root is the run's `pipeline_root`, else the ConfigMap's
  `defaultPipelineRoot`, else `minio://mlpipeline/v2/artifacts`. The spec's own
  `defaultPipelineRoot` is never read by the backend.
- Multi-user (`manifests/.../pipelines-profile-controller/sync.py`): each profile namespace gets
  the root `minio://mlpipeline/private-artifacts/<ns>/v2/artifacts` and keys that may only touch
  `mlpipeline/{artifacts,private-artifacts/<ns>,private/<ns>,shared}/*`.

One `LauncherConfig` (a release's defaults plus the ConfigMap's providers) gives a `Session` for
any location. The compiled package carries it into every task's environment (`ENV_VAR`), so the
storage layer in the pod, the KServe secret and `run-local` all resolve the same way. Sessions
name secrets and their keys; no credential value passes through here.
"""

import dataclasses
import json
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from common import redact, safe_yaml

ENV_VAR = "SIGNS_KFP_LAUNCHER"  # the package's LauncherConfig, JSON, in every task's environment
# run-local stands in for the cluster's DNS: {"seaweedfs.kubeflow:9000": "127.0.0.1:PORT"}.
ADDRESSES_ENV_VAR = "SIGNS_KFP_SERVICE_ADDRESSES"
KFP_SECRET = "mlpipeline-minio-artifact"
KFP_SECRET_KEYS = ("accesskey", "secretkey")
KFP_BUCKET = "mlpipeline"
BACKEND_DEFAULT_ROOT = "minio://mlpipeline/v2/artifacts"  # driver/root_dag.go, config/env.go


class StoreConfigError(ValueError):
    """A root, a ConfigMap or a provider the launcher would refuse; one line naming it."""


@dataclasses.dataclass(frozen=True)
class Release:
    """What changes between KFP releases for a task (launcher_v2.go, driver.go, objectstore/config.go)."""

    name: str
    minio_endpoint: str  # the launcher's default for minio:// (host:port, plain http)
    retry_qualified_logs: bool  # executor-logs URI gets "-<retry>" (qualifyExecutorLogsForRetry, 2.17)
    output_file_in_task_root: bool  # outputs.outputFile under the task root's local path (else /tmp/kfp_outputs)
    custom_path: bool  # RuntimeArtifact.custom_path honoured (2.15+)
    multi_user: bool = False  # profile namespaces: roots and keys under private-artifacts/<ns>


RELEASES = {
    "2.5": Release("2.5", "minio-service.kubeflow:9000", False, False, False),
    "2.15": Release("2.15", "minio-service.kubeflow:9000", False, True, True),
    "2.16": Release("2.16", "seaweedfs.kubeflow:9000", False, True, True),
    "2.17": Release("2.17", "seaweedfs.kubeflow:9000", True, True, True),
    "2.17-multi-user": Release("2.17-multi-user", "seaweedfs.kubeflow:9000", True, True, True, multi_user=True),
}
DEFAULT_RELEASE = "2.17"  # the newest release


def release(name: str) -> Release:
    if name not in RELEASES:
        raise StoreConfigError(f"--kfp-release {name!r}: known releases are {', '.join(RELEASES)}")
    return RELEASES[name]


def namespace_root(namespace: str) -> str:
    """The root the profile controller gives a namespace (sync.py)."""
    return f"minio://{KFP_BUCKET}/private-artifacts/{namespace}/v2/artifacts"


def namespace_prefixes(namespace: str) -> Tuple[str, ...]:
    """The key prefixes of `mlpipeline` a namespace's keys may touch (sync.py, put_user_policy)."""
    return ("artifacts/", f"private-artifacts/{namespace}/", f"private/{namespace}/", "shared/")


_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_namespace_root(root: str, namespace: str) -> None:
    """Raises StoreConfigError unless a namespace's keys may write everything under `root`."""
    if not _NAMESPACE.match(namespace or ""):
        raise StoreConfigError(f"--namespace {namespace!r}: not a Kubernetes namespace name")
    bucket, prefix = split(root)
    if not root.startswith("minio://"):
        return  # the profile controller's keys are for KFP's own store only
    if bucket != KFP_BUCKET or not any((prefix + "/").startswith(p) for p in namespace_prefixes(namespace)):
        allowed = ", ".join(f"minio://{KFP_BUCKET}/{p}" for p in namespace_prefixes(namespace))
        raise StoreConfigError(f"--pipeline-root {root}: outside what namespace {namespace}'s keys may touch "
                               f"({allowed}); use {namespace_root(namespace)}")


def split(location: str) -> Tuple[str, str]:
    """(bucket, key prefix without slashes at either end) of a URL."""
    rest = location.split("://", 1)[1] if "://" in location else location
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


@dataclasses.dataclass(frozen=True)
class Session:
    """How the launcher opens a location's bucket: objectstore.SessionInfo's params, typed."""

    provider: str  # minio, s3 or gs
    from_env: bool  # the SDK's default chain (environment, IRSA, Workload Identity)
    endpoint: str = ""  # host:port or URL; "" = the SDK's (AWS's own, or AWS_ENDPOINT_URL_S3)
    region: str = ""
    disable_ssl: bool = False
    secret_name: str = ""  # the Kubernetes secret holding the keys (from_env False)
    access_key_key: str = ""
    secret_key_key: str = ""
    token_key: str = ""  # gs: the secret's key holding a service-account JSON
    params: Tuple[Tuple[str, str], ...] = ()  # the launcher's own params, as it records them

    @classmethod
    def from_info(cls, info: Dict[str, Any]) -> "Session":
        p = info["Params"]
        return cls(info["Provider"], p.get("fromEnv") == "true", p.get("endpoint", ""), p.get("region", ""),
                   p.get("disableSSL") == "true", p.get("secretName", ""), p.get("accessKeyKey", ""),
                   p.get("secretKeyKey", ""), p.get("tokenKey", ""), tuple(sorted(p.items())))

    @property
    def force_path_style(self) -> bool:
        """Bucket in the path (http://host/bucket/key), as the launcher's `forcePathStyle` says
        (its default: true); false: in the host name (http://bucket.host/key)."""
        return dict(self.params).get("forcePathStyle", "true") == "true"

    @property
    def max_retries(self) -> Optional[int]:
        """The launcher's `maxRetries` for this store (None: not given, the storage layer's own)."""
        value = dict(self.params).get("maxRetries", "")
        return min(int(value), 20) if value.isdigit() else None

    def endpoint_url(self, addresses: Optional[Mapping[str, str]] = None) -> str:
        """The endpoint as a URL ('' for the SDK's own); `addresses` maps cluster hosts to reachable ones."""
        if not self.endpoint:
            return ""
        problem = redact.endpoint_problem(self.endpoint)
        if problem:  # botocore would refuse user info at the first request, with the password in its message
            raise StoreConfigError(f"the store endpoint {redact.endpoint_for_messages(self.endpoint)} {problem}")
        scheme, sep, host = self.endpoint.partition("://")
        if not sep:
            scheme, host = ("http" if self.disable_ssl else "https"), self.endpoint
        host = (addresses or {}).get(host.rstrip("/"), host.rstrip("/"))
        return f"{scheme}://{host}"

    def info(self) -> Dict[str, Any]:
        """The launcher's store_session_info (what it records in ML Metadata)."""
        return {"Provider": self.provider, "Params": dict(self.params)}


@dataclasses.dataclass(frozen=True)
class LauncherConfig:
    """A KFP release's defaults and the `kfp-launcher` ConfigMap's `providers` (None: no ConfigMap or key)."""

    release: str = DEFAULT_RELEASE
    providers: Optional[Dict[str, Any]] = None
    default_pipeline_root: str = ""  # the ConfigMap's defaultPipelineRoot ("" = the backend's)
    namespace: str = ""  # the profile namespace the package is for ("" = single-user)

    def session(self, location: str) -> Session:
        """The session the launcher would open `location` with (config.GetStoreSessionInfo).

        Raises:
          StoreConfigError: a location or provider config the driver refuses, with its reason.
        """
        return Session.from_info(self.session_info(location))

    def session_info(self, location: str) -> Dict[str, Any]:
        """config.GetStoreSessionInfo: {"Provider": ..., "Params": {...}}, as the Go code builds it."""
        match = _BUCKET.match(location)
        if not match:
            raise StoreConfigError(f"{location}: parse bucket config failed: unrecognized pipeline root format")
        scheme, bucket, prefix, query = match.groups()
        if scheme not in ("gs://", "s3://", "minio://", "mem://"):
            raise StoreConfigError(f"{location}: parse bucket config failed: unsupported Cloud bucket")
        provider = scheme[:-3]
        if provider == "mem":
            raise StoreConfigError(f"{location}: encountered unsupported provider in provider config mem")
        config = _get(self.providers, provider)
        if provider == "minio" and not _configured(config) and not query:
            return {"Provider": "minio", "Params": {
                "region": "minio", "endpoint": release(self.release).minio_endpoint, "disableSSL": "true",
                "fromEnv": "false", "maxRetries": "5", "secretName": KFP_SECRET,
                "accessKeyKey": KFP_SECRET_KEYS[0], "secretKeyKey": KFP_SECRET_KEYS[1]}}
        if not _configured(config) or (query and provider != "gs"):
            return {"Provider": provider, "Params": {"fromEnv": "true"}}
        prefix = (prefix or "").lstrip("/")
        prefix = prefix + "/" if prefix and not prefix.endswith("/") else prefix
        return {"Provider": provider, "Params": _provider_params(provider, config, bucket, prefix)}

    def to_json(self) -> str:
        return json.dumps({"release": self.release, "providers": self.providers, "namespace": self.namespace,
                           "defaultPipelineRoot": self.default_pipeline_root,
                           "minioEndpoint": release(self.release).minio_endpoint}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LauncherConfig":
        data = json.loads(text)
        return cls(release(data.get("release") or DEFAULT_RELEASE).name, data.get("providers"),
                   data.get("defaultPipelineRoot") or "", data.get("namespace") or "")

    def secrets(self, locations: List[str]) -> List[Tuple[str, Dict[str, str]]]:
        """(secret name, {secret key: env var}) the tasks need for these locations, each secret once.

        S3 keys become AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (what boto reads); a GCS token
        becomes GOOGLE_SERVICE_ACCOUNT_JSON (what the storage layer hands gcsfs).
        """
        found: Dict[str, Dict[str, str]] = {}
        for location in locations:
            s = self.session(location)
            if not s.secret_name:
                continue
            keys = ({s.token_key: "GOOGLE_SERVICE_ACCOUNT_JSON"} if s.provider == "gs" else
                    {s.access_key_key: "AWS_ACCESS_KEY_ID", s.secret_key_key: "AWS_SECRET_ACCESS_KEY"})
            taken = {v for name, m in found.items() if name != s.secret_name for v in m.values()}
            if taken & set(keys.values()):
                raise StoreConfigError(f"{location}: its credentials (secret {s.secret_name}) differ from another "
                                       f"location's, and a task has one set of {', '.join(sorted(keys.values()))}")
            found.setdefault(s.secret_name, {}).update(keys)
        return sorted(found.items())


# objectstore/config.go bucketPattern
_BUCKET = re.compile(r"^([a-z][a-z0-9]+:///?)([^/?]+)(/[^?]*)?(\?.+)?$")


def _configured(config: Any) -> bool:
    return isinstance(config, dict) and (_get(config, "default") is not None or _overrides(config) is not None)


def _overrides(config: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    # The Go structs tag the field "Overrides"; encoding/json matches names case-insensitively.
    return _get(config, "overrides")


def provider_entries(config: Any) -> List[Dict[str, Any]]:
    """A provider's default and overrides, in that order (for what they name: endpoints, secrets)."""
    if not isinstance(config, dict):
        return []
    return [e for e in [_get(config, "default")] + list(_overrides(config) or []) if isinstance(e, dict)]


def _get(mapping: Any, name: str, default: Any = None) -> Any:
    if not isinstance(mapping, dict):
        return default
    for key, value in mapping.items():
        if key.lower() == name.lower():
            return value
    return default


def _bool(value: Any) -> str:
    return "true" if value is True or str(value).lower() == "true" else "false"


def _provider_params(provider: str, config: Dict[str, Any], bucket: str, prefix: str) -> Dict[str, str]:
    """s3.go, minio.go and gcs.go ProvideSessionInfo for a provider the ConfigMap configures."""
    def invalid(why: str) -> StoreConfigError:
        return StoreConfigError(f"kfp-launcher providers.{provider}: invalid provider config: {why}")

    default = _get(config, "default")
    if default is None or _get(default, "credentials") is None:
        raise invalid("missing default credentials")
    params: Dict[str, str] = {}
    if provider != "gs":
        params.update(endpoint=str(_get(default, "endpoint", "")), region=str(_get(default, "region", "")),
                      disableSSL=_bool(_get(default, "disableSSL", False)),
                      forcePathStyle=_bool(_get(default, "forcePathStyle", True)),
                      maxRetries=str(_get(default, "maxRetries", 5)))
    secret_fields = ("secretName", "tokenKey") if provider == "gs" else ("secretName", "accessKeyKey", "secretKeyKey")
    credentials = _get(default, "credentials")
    params["fromEnv"] = _bool(_get(credentials, "fromEnv", False))
    if params["fromEnv"] == "false":
        ref = _get(credentials, "secretRef") or {}
        params.update({f: str(_get(ref, f, "")) for f in secret_fields})
    override = next((o for o in _overrides(config) or []
                     if _get(o, "bucketName") == bucket and prefix.startswith(_get(o, "keyPrefix") or "")), None)
    if override is None:
        return params
    if provider != "gs":
        for field in ("endpoint", "region"):
            if _get(override, field):
                params[field] = str(_get(override, field))
        for field in ("disableSSL", "forcePathStyle"):
            if _get(override, field) is not None:
                params[field] = _bool(_get(override, field))
        if _get(override, "maxRetries") is not None and _get(default, "maxRetries") is not None:
            params["maxRetries"] = str(_get(default, "maxRetries"))  # s3.go copies the default's here
    credentials = _get(override, "credentials")
    if credentials is None:
        raise invalid("missing override credentials" if provider != "gs" else "missing override secretref")
    params["fromEnv"] = _bool(_get(credentials, "fromEnv", False))
    if params["fromEnv"] == "false":
        ref = _get(credentials, "secretRef")
        if ref is None:
            raise invalid("missing override secretref")
        params.update({f: str(_get(ref, f, "")) for f in secret_fields})
    else:
        for field in secret_fields:
            params.pop(field, None)
    return params


def parse_configmap(text: str, source: str, kfp_release: str = DEFAULT_RELEASE) -> LauncherConfig:
    """A LauncherConfig from the `kfp-launcher` ConfigMap (`kubectl get cm kfp-launcher -o yaml`, or its data).

    Raises:
      StoreConfigError: not YAML, or `providers` is not the launcher's schema; the message names `source`.
    """
    try:
        document = safe_yaml.load(text) or {}
        data = document.get("data", document) if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise ValueError("not a mapping")
        providers = data.get("providers")
        if isinstance(providers, str):
            providers = safe_yaml.load(providers)
        if providers is not None and not isinstance(providers, dict):
            raise ValueError("providers is not a mapping")
    except (yaml.YAMLError, ValueError, AttributeError) as e:
        raise StoreConfigError(f"{source}: not a kfp-launcher ConfigMap ({str(e).splitlines()[0]})") from None
    unknown = sorted(set(providers or {}) - {"minio", "s3", "gs"})
    if unknown:
        raise StoreConfigError(f"{source}: providers has {unknown}; the launcher knows minio, s3 and gs")
    for name, config in (providers or {}).items():
        for entry in provider_entries(config):
            endpoint = str(_get(entry, "endpoint", "") or "")
            problem = endpoint and redact.endpoint_problem(endpoint)
            if problem:  # refused here, before it is written into a package
                raise StoreConfigError(f"{source}: providers.{name} endpoint {redact.endpoint_for_messages(endpoint)} "
                                       f"{problem}")
    return LauncherConfig(release(kfp_release).name, providers, str(data.get("defaultPipelineRoot") or ""))


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """How a process reaches object stores: read once at the top (`from_environment`) and handed to
    the storage layer (`storage.configure`), which reads no environment itself."""

    launcher: Optional[LauncherConfig] = None  # a compiled package's, in its tasks: resolve as the launcher does
    minio_endpoint: str = ""  # this machine's KFP store, SIGNS_MINIO_ENDPOINT ("" = the newest release's)
    s3_endpoint: str = ""  # SIGNS_S3_ENDPOINT ("" = the AWS SDK's own: AWS_ENDPOINT_URL_S3, else AWS)
    addresses: Tuple[Tuple[str, str], ...] = ()  # cluster host -> reachable host (run-local's stand-in DNS)
    access_key: str = ""  # S3 keys ("" = boto's chain: AWS_ACCESS_KEY_ID, IRSA, ...)
    secret_key: str = ""
    gcs_token: str = ""  # a service-account JSON from a secret ("" = Google's default credentials)
    gcs_endpoint: str = ""  # a GCS emulator (STORAGE_EMULATOR_HOST); "" = Google's

    def session(self, location: str) -> Session:
        """How a remote location's bucket is opened."""
        if self.launcher is not None:
            return self.launcher.session(location)
        kind = location.split("://", 1)[0]
        if kind == "minio" and self.minio_endpoint:
            return Session("minio", True, self.minio_endpoint)
        if kind == "s3" and self.s3_endpoint:
            return Session("s3", True, self.s3_endpoint)
        return LauncherConfig().session(location)

    def endpoint_url(self, location: str) -> str:
        """The URL a location's S3 store answers at, through the address map ('' = the SDK's own)."""
        return self.session(location).endpoint_url(dict(self.addresses))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "StoreSettings":
        """What this process's environment says: a task's package config, or this machine's settings."""
        return cls(from_environment(environ), environ.get("SIGNS_MINIO_ENDPOINT", ""),
                   environ.get("SIGNS_S3_ENDPOINT", ""), tuple(sorted(addresses(environ).items())),
                   gcs_token=environ.get("GOOGLE_SERVICE_ACCOUNT_JSON", ""),
                   gcs_endpoint=environ.get("STORAGE_EMULATOR_HOST", ""))


def from_environment(environ: Mapping[str, str]) -> Optional[LauncherConfig]:
    """The package's LauncherConfig in a task's environment, or None outside a compiled package."""
    text = environ.get(ENV_VAR)
    return LauncherConfig.from_json(text) if text else None


def addresses(environ: Mapping[str, str]) -> Dict[str, str]:
    text = environ.get(ADDRESSES_ENV_VAR)
    return json.loads(text) if text else {}
