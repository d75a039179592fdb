"""KServe's InferenceService for the serving directory: the manifest, and where it is kept.

A cluster with KServe serves a pushed model from a manifest like this one:

    apiVersion: serving.kserve.io/v1beta1
    kind: InferenceService
    metadata: {name: signs, annotations: {signs-pipeline/version: "3", ...}}
    spec:
      predictor:
        minReplicas: 1
        serviceAccountName: signs-kserve        # minio:// roots: carries the S3 secret
        model:
          modelFormat: {name: tensorflow, version: "2"}
          runtimeVersion: "2.16.1"               # TF Serving of the TensorFlow that exported the model
          storageUri: s3://mlpipeline/v2/artifacts/serving_model
          resources: {requests: {cpu: "1", memory: 1Gi}, limits: {cpu: "2", memory: 2Gi}}

What KServe does with it (kserve/kserve):

- `modelFormat: tensorflow` picks the `kserve-tensorflow-serving` ClusterServingRuntime
  (config/runtimes/kserve-tensorflow-serving.yaml), which runs `tensorflow_model_server
  --model_name=<name> --model_base_path=/mnt/models`. So `storageUri` is the serving directory
  itself, the TF Serving *base* path with its numbered versions, not one version: TF Serving
  serves the newest version it finds there (its default policy).
- That runtime's image is `tensorflow/serving:2.6.2` (config/runtimes/kustomization.yaml), whose
  TensorFlow cannot load the ops a TF 2.16 export holds (`DisableCopyOnRead`, ...). `runtimeVersion`
  replaces the image's tag (pkg/controller/v1beta1/inferenceservice/utils, UpdateImageTag), so
  the manifest names the TF Serving release of the TensorFlow that exported the model
  (`tf_serving.runtime_version`).
- The storage initializer (python/storage/kserve_storage/kserve_storage.py) copies everything
  under `storageUri` into /mnt/models when a pod starts. It reads `gs://` and `s3://`; it has no
  `minio://`, so a `minio://bucket/key` serving dir becomes `s3://bucket/key`, and the MinIO
  endpoint reaches it from the S3 Secret's annotations (see `credentials_manifests`).
- A running pod keeps the model it downloaded. This manifest names the version that was newest
  when it was made (`signs-pipeline/version`); KServe copies an InferenceService's annotations onto
  the predictor's pod template (components/predictor.go, reconcilers/knative/ksvc_reconciler.go),
  so applying the manifest of a newer version makes a new revision whose pods download again,
  while re-applying an unchanged one changes nothing.

The manifest of a pushed version is kept in that version, `<serving_dir>/<version>/
inferenceservice.yaml` (`write_manifest`). TF Serving ignores it: in a version directory it reads
the SavedModel (saved_model.pb, variables/, assets/) and optionally assets.extra/'s warm-up
requests and saved_model_config.pb (tensorflow/serving: servables/tensorflow/
saved_model_warmup_util.cc, saved_model_config_util.cc), and in the base directory it only looks
for children whose names parse as version numbers (sources/storage_path/
file_system_storage_path_source.cc, ParseVersionNumber); `push_info.json` already lives there the
same way.

No credential value is ever part of a manifest made here.
"""

import re
from typing import Any, Dict, List, Optional

import yaml

from components.data import storage, stores
from components.push import tf_serving, version_dirs

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
MANIFEST = "inferenceservice.yaml"  # kept in each version directory

# KServe's admission webhook takes only these names (pkg/apis/serving/v1beta1/
# inference_service_validation.go, IsvcNameFmt): a DNS-1035 label.
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# The names of a ServiceAccount and a Secret: DNS-1123 subdomains.
OBJECT_NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

PART_OF = "signs-pipeline"
SERVING_DIR_KEY = "signs-pipeline/serving-dir"  # the serving dir as the pipeline wrote it (minio://...)
VERSION_KEY = "signs-pipeline/version"  # the newest version when the manifest was made
RUN_KEY = "signs-pipeline/pipeline-run"  # the KFP run that pushed it

# The SavedModel holds 23.6M float32 parameters (~95 MB) of a ResNet50 on 64x64 images, about a
# tenth of its usual 224x224 work per image: TF Serving with it fits in 1Gi, with room up to 2Gi
# for batched requests, on a CPU or two (the runtime's own default: 1 CPU / 2Gi for both).
DEFAULT_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}

# The ServiceAccount and S3 Secret that `credentials_manifests` makes for minio:// roots.
DEFAULT_SERVICE_ACCOUNT = "signs-kserve"
DEFAULT_S3_SECRET = "signs-kserve-s3"
# The key names KServe looks up in an S3 secret: `credentials.s3.s3AccessKeyIDName` and
# `s3SecretAccessKeyName` of its inferenceservice-config ConfigMap (config/configmap/
# inferenceservice.yaml); KServe treats a secret as S3 only if it holds the second one
# (pkg/credentials/service_account_credentials.go, mountSecretCredential).
KSERVE_S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Secret annotations KServe turns into the storage initializer's S3 settings
# (pkg/credentials/s3/s3_secret.go, utils.go BuildS3EnvVars).
S3_ENDPOINT_ANNOTATION = "serving.kserve.io/s3-endpoint"
S3_USEHTTPS_ANNOTATION = "serving.kserve.io/s3-usehttps"
S3_REGION_ANNOTATION = "serving.kserve.io/s3-region"


class ManifestError(ValueError):
    """A manifest could not be made from what was given; one line naming it."""


def storage_uri(serving_dir: str) -> str:
    """The serving dir as KServe's storage initializer reads it: gs:// and s3:// as they are,
    minio://bucket/key as s3://bucket/key (the endpoint goes in the S3 Secret's annotations)."""
    kind = storage.scheme(serving_dir)
    rest = serving_dir.split("://", 1)[-1].strip("/")
    if not kind:
        raise ManifestError(f"serving dir {serving_dir!r} is a local path, which no KServe pod can read; "
                            f"push to gs://, s3:// or minio://")
    if not rest or "/" not in rest:
        raise ManifestError(f"serving dir {serving_dir!r} names a bucket only; the serving dir is a folder in one")
    return f"{'s3' if kind == 'minio' else kind}://{rest}"


def needs_s3_secret(serving_dir: str) -> bool:
    """True for minio:// roots: KFP's MinIO is no AWS, so KServe needs its endpoint and keys."""
    return storage.scheme(serving_dir) == "minio"


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise ManifestError(f"InferenceService name {name!r}: KServe takes lower-case letters, digits and '-', "
                            f"starting with a letter and ending with a letter or digit")


def _check_object_name(name: str, what: str) -> None:
    if not OBJECT_NAME_PATTERN.match(name or "") or len(name) > 253:
        raise ManifestError(f"{what} name {name!r}: Kubernetes takes lower-case letters, digits, '-' and '.', "
                            f"starting and ending with a letter or digit")


def inference_service(serving_dir: str, name: str = "signs", namespace: Optional[str] = None,
                      service_account: Optional[str] = None, version: Optional[int] = None,
                      pipeline_run: Optional[str] = None, resources: Optional[Dict[str, Any]] = None,
                      min_replicas: int = 1, tf_version: Optional[str] = None) -> Dict[str, Any]:
    """The InferenceService that serves the model pushed into `serving_dir`.

    Args:
      serving_dir: the TF Serving base directory the Pusher writes (gs://, s3:// or minio://).
      name: the InferenceService's name; TF Serving's model name too (`/v1/models/<name>:predict`).
      namespace: its namespace; None leaves it to `kubectl apply -n` or the context's default.
      service_account: the predictor's ServiceAccount, whose secrets KServe reads for storage
        credentials. None: `DEFAULT_SERVICE_ACCOUNT` for minio:// roots (see
        `credentials_manifests`), the namespace's default otherwise (Workload Identity or IRSA
        for gs:// and AWS s3://); '' for none.
      version: the pushed version this manifest is for (an annotation and a label).
      pipeline_run: the KFP run that pushed it (an annotation).
      resources: the predictor's requests and limits (default `DEFAULT_RESOURCES`).
      min_replicas: 1 keeps a pod warm; 0 lets it scale to zero (then the first request waits
        for the model's download).
      tf_version: the TensorFlow that exported the model (default: the one installed here); the
        manifest's `runtimeVersion` is its TF Serving release.

    Raises:
      ManifestError: a local serving dir, a name KServe refuses, a version that is no number, a
        TensorFlow no TF Serving release is known for.
    """
    uri = storage_uri(serving_dir)
    _check_name(name)
    try:
        runtime = tf_serving.runtime_version(tf_version)
    except tf_serving.ReleaseError as e:
        raise ManifestError(str(e)) from None
    if service_account is None:
        service_account = DEFAULT_SERVICE_ACCOUNT if needs_s3_secret(serving_dir) else ""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}
    annotations = {SERVING_DIR_KEY: serving_dir}
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ManifestError(f"version {version!r}: a pushed version is an integer >= 1")
        labels[VERSION_KEY] = annotations[VERSION_KEY] = str(version)
    if pipeline_run:
        annotations[RUN_KEY] = str(pipeline_run)
    metadata = dict(_metadata(name, namespace, labels), annotations=annotations)
    predictor: Dict[str, Any] = {"minReplicas": int(min_replicas)}
    if service_account:
        _check_object_name(service_account, "ServiceAccount")
        predictor["serviceAccountName"] = service_account
    predictor["model"] = {
        # The runtime lists tensorflow versions "1" and "2"; TFX 1.16 exports TF 2 SavedModels.
        "modelFormat": {"name": "tensorflow", "version": "2"},
        "runtimeVersion": runtime,
        "storageUri": uri,
        "resources": _copy(resources or DEFAULT_RESOURCES),
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"predictor": predictor}}


def _copy(resources: Dict[str, Any]) -> Dict[str, Any]:
    return {k: dict(v) for k, v in resources.items()}


def to_yaml(manifest: Dict[str, Any]) -> str:
    """The manifest as `kubectl apply -f` takes it, fields in the order they were made."""
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def manifest_path(serving_dir: str, version: int) -> str:
    return storage.join(version_dirs.version_dir(serving_dir, version), MANIFEST)


def write_manifest(serving_dir: str, version: int, manifest: Dict[str, Any]) -> str:
    """Writes the manifest into a pushed version, `<serving_dir>/<version>/inferenceservice.yaml`.

    Written after the push (the version's saved_model.pb is already there): the manifest is a
    record beside the model, which TF Serving never reads (see the module docstring). Returns
    where it went.
    """
    path = manifest_path(serving_dir, version)
    storage.write_bytes(path, to_yaml(manifest).encode())
    return path


def read_manifest(serving_dir: str, version: int) -> str:
    """The manifest text kept in a version; FileNotFoundError if it has none."""
    return storage.read_bytes(manifest_path(serving_dir, version)).decode()


def _s3_endpoint(serving_dir: str, endpoint: Optional[str]) -> str:
    """The S3 endpoint URL a serving dir's store answers at ('' for AWS's own)."""
    if endpoint is None:
        endpoint = storage.session(serving_dir).endpoint_url()
    return endpoint.strip()


def _endpoint_annotations(endpoint: str) -> Dict[str, str]:
    """KServe's annotations for an endpoint: host[:port] and whether to use https.

    KServe 0.17 and later also take `http://host:port` in `s3-endpoint` (kserve#4797), but older
    releases prefix it with http(s):// themselves, so the scheme goes into `s3-usehttps` instead,
    which both read.
    """
    scheme, sep, host = endpoint.partition("://")
    if not sep:
        scheme, host = "", endpoint
    host = host.rstrip("/")
    if "@" in host:
        raise ManifestError("the S3 endpoint carries user information (user:password@); give the host and port only")
    if not host or "/" in host or scheme not in ("", "http", "https"):
        raise ManifestError(f"S3 endpoint {endpoint!r}: expected http://host:port, https://host:port or host:port")
    annotations = {S3_ENDPOINT_ANNOTATION: host}
    if scheme:
        annotations[S3_USEHTTPS_ANNOTATION] = "1" if scheme == "https" else "0"
    return annotations


def credentials_manifests(serving_dir: str, namespace: Optional[str] = None,
                          service_account: str = DEFAULT_SERVICE_ACCOUNT, secret: str = DEFAULT_S3_SECRET,
                          endpoint: Optional[str] = None, region: Optional[str] = None) -> List[Dict[str, Any]]:
    """The ServiceAccount and S3 Secret (annotations only, no data) a minio:// or s3:// serving dir needs.

    KServe finds storage credentials through the predictor's ServiceAccount: each Secret it lists
    that holds `AWS_SECRET_ACCESS_KEY` becomes the storage initializer's AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, and the Secret's `serving.kserve.io/s3-*` annotations its endpoint
    settings. KFP's MinIO secret (`mlpipeline-minio-artifact`) holds the same keys under other
    names (`accesskey`, `secretkey`), so KServe would pass it over: the Secret made here carries
    the annotations, and its two keys are copied in once from KFP's secret by the commands of
    `credentials_setup` — never through this code, so no credential value is in any manifest.

    Args:
      endpoint: the store's URL (default: as `storage.session` resolves it: the compiled package's
        launcher config in a task, else SIGNS_MINIO_ENDPOINT or the newest KFP's store for minio://,
        SIGNS_S3_ENDPOINT for s3://, nothing, i.e. AWS, when that is unset).
      region: the bucket's region, for AWS (`serving.kserve.io/s3-region`).
    """
    kind = storage.scheme(serving_dir)
    if kind not in ("s3", "minio"):
        raise ManifestError(f"serving dir {serving_dir!r}: an S3 secret is for s3:// and minio:// stores; for gs:// "
                            f"give the predictor's ServiceAccount read access to the bucket (Workload Identity)")
    _check_object_name(service_account, "ServiceAccount")
    _check_object_name(secret, "Secret")
    annotations = {}
    url = _s3_endpoint(serving_dir, endpoint)
    if url:
        annotations.update(_endpoint_annotations(url))
    if region:
        annotations[S3_REGION_ANNOTATION] = region
    labels = {"app.kubernetes.io/part-of": PART_OF}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(service_account, namespace, labels),
               "secrets": [{"name": secret}]}
    s3_secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": _metadata(secret, namespace, labels)}
    if annotations:
        s3_secret["metadata"]["annotations"] = annotations
    return [account, s3_secret]


def _metadata(name: str, namespace: Optional[str], labels: Dict[str, str]) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    return metadata


def credentials_setup(serving_dir: str, namespace: Optional[str] = None, service_account: str = DEFAULT_SERVICE_ACCOUNT,
                      secret: str = DEFAULT_S3_SECRET, source_namespace: str = "kubeflow",
                      session: Optional[stores.Session] = None) -> str:
    """What a user applies once per namespace before the first InferenceService of a minio:// or
    s3:// serving dir: the manifests of `credentials_manifests`, headed by the shell commands (as
    comments) that then fill the Secret's keys on the cluster, so their values never pass through here.

    `session` is how the pipeline's tasks reach the serving dir (default: `storage.session`; a
    compiled package's launcher config for `deploy --package`): its endpoint and region go into
    the annotations, and when it names a secret (KFP's `mlpipeline-minio-artifact`, or a
    kfp-launcher provider's secretRef) the keys are copied from that secret in `source_namespace`
    (in a multi-user install, the profile namespace has its own). Otherwise they come from the
    user's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or use IRSA instead:
    `eks.amazonaws.com/role-arn` on the ServiceAccount, and no Secret).
    """
    session = session or storage.session(serving_dir)
    documents = credentials_manifests(serving_dir, namespace, service_account, secret, session.endpoint_url(),
                                      session.region or None)
    where = namespace or "NAMESPACE"
    kserve_access, kserve_secret = KSERVE_S3_KEYS
    if session.secret_name:
        access, secret_key = session.access_key_key, session.secret_key_key
        get = f"kubectl -n {source_namespace} get secret {session.secret_name} -o jsonpath="
        source = f"the pipeline's secret {session.secret_name} holds them as {access} and {secret_key}"
        fill = [f"AK=$({get}'{{.data.{access}}}')", f"SK=$({get}'{{.data.{secret_key}}}')"]
        note = f"In a multi-user Kubeflow each profile namespace has its own {session.secret_name}."
    else:
        source = "they come from your own AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        fill = ["AK=$(printf %s \"$AWS_ACCESS_KEY_ID\" | base64 | tr -d '\\n')",
                "SK=$(printf %s \"$AWS_SECRET_ACCESS_KEY\" | base64 | tr -d '\\n')"]
        note = "With IRSA, annotate the ServiceAccount with eks.amazonaws.com/role-arn instead and skip the keys."
    commands = [f"kubectl apply -n {where} -f this-file.yaml", *fill,
                f"printf '{{\"data\":{{\"{kserve_access}\":\"%s\",\"{kserve_secret}\":\"%s\"}}}}' \"$AK\" \"$SK\" \\",
                f"  | kubectl -n {where} patch secret {secret} --type merge --patch-file /dev/stdin",
                "unset AK SK"]
    header = [
        f"KServe reads {serving_dir}",
        f"as {storage_uri(serving_dir)}, with the credentials of ServiceAccount {service_account}.",
        f"Its Secret {secret} holds the store's endpoint (annotations) and, once the commands below fill",
        f"them in, the keys as KServe names them ({kserve_access}, {kserve_secret});",
        f"{source}. Once per namespace:",
        "",
        *("  " + c for c in commands),
        "",
        "The Secret keeps the values base64, as the commands pass them.",
        note,
        "If your cluster's inferenceservice-config names other keys under credentials.s3, use those.",
    ]
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + "---\n".join(to_yaml(d) for d in documents)
