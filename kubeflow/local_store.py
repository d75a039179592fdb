"""A stand-in for a cluster's object store and secrets, for `run-local`.

- **The store** is moto's S3 server (or gcp-storage-emulator for `gs://`) on 127.0.0.1. Tasks
  reach it under the name the launcher would use (`seaweedfs.kubeflow:9000` on KFP 2.16+): the
  address map in their environment stands in for the cluster's DNS, so a package compiled for
  another release names a host that does not answer, as on a cluster.
- **Multi-user keys.** In a profile namespace the launcher and the tasks hold that namespace's
  keys, which the profile controller lets touch only `mlpipeline/{artifacts,private-artifacts/<ns>,
  private/<ns>,shared}/*` (sync.py's user and bucket policies); a filter in front of moto answers
  403 AccessDenied to anything else, as SeaweedFS would.
- **Secrets** (the Kubernetes API): `mlpipeline-minio-artifact`, as KFP's install and the profile
  controller make it, plus the secrets a `kfp-launcher` provider names, or those of a file.
- **Persistence.** The store's objects are kept under `<work dir>/store/` between runs, so a
  second run finds the model the first pushed. A directory marker object (`dir/`) is refused
  when the store is saved: KFP's launcher downloads it as a file and then cannot make the folder.
"""

import base64
import binascii
import contextlib
import io
import json
import os
import re
import secrets as random_secrets
import urllib.parse
import uuid
from typing import Any, Dict, Iterator, List

import yaml

from common import safe_yaml
from kubeflow import entrypoint
from kubeflow.stand_in_stores import start_stand_in
from components.data import storage, stores

ADMIN_KEY = "kfp-admin"


class StoreError(Exception):
    """The stand-in or a secret could not be set up; one line."""


def load_secrets(path: str) -> Dict[str, Dict[str, str]]:
    """Secrets from a YAML file of Kubernetes Secrets: name -> {key: value} (data base64, or stringData).

    Raises:
      StoreError: one line naming the file, and the secret and key where one is malformed (never a value).
    """
    try:
        with open(path, encoding="utf-8") as f:
            documents = [d for d in safe_yaml.load_all(f.read(safe_yaml.MAX_BYTES + 1)) if d]
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        why = getattr(e, "strerror", None) or (str(e) if isinstance(e, ValueError) else "not YAML")
        raise StoreError(f"--secrets {path}: cannot read it ({why})") from None
    found: Dict[str, Dict[str, str]] = {}
    for number, document in enumerate(documents, 1):
        items = document.get("items", [document]) if isinstance(document, dict) else [document]
        for item in items if isinstance(items, list) else [items]:
            metadata = item.get("metadata") if isinstance(item, dict) else None
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if not isinstance(item, dict) or item.get("kind") != "Secret" or not isinstance(name, str) or not name:
                raise StoreError(f"--secrets {path}: document {number} holds something other than a Kubernetes Secret "
                                 f"with a name")
            found[name] = _secret_values(path, name, item)
    return found


def _secret_values(path: str, name: str, item: Dict[str, Any]) -> Dict[str, str]:
    """A Secret's `data` (base64) and `stringData`, checked as the API server checks them."""
    values: Dict[str, str] = {}
    for field in ("data", "stringData"):
        entries = item.get(field) or {}
        if not isinstance(entries, dict):
            raise StoreError(f"--secrets {path}: secret {name!r}: {field} is not a mapping of keys to values")
        for key, value in entries.items():
            if not isinstance(key, str) or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
                raise StoreError(f"--secrets {path}: secret {name!r}: {str(key)[:60]!r} is not a valid key "
                                 f"(letters, digits, '-', '_', '.')")
            if field == "stringData":
                values[key] = str(value)
                continue
            try:
                values[key] = base64.b64decode(value if isinstance(value, str) else "*", validate=True).decode()
            except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
                raise StoreError(f"--secrets {path}: secret {name!r} key {key!r}: data is not base64 of UTF-8 text "
                                 f"(put plain text under stringData)") from None
    return values


def pod_secret_env(platform: Dict[str, Any], secrets: Dict[str, Dict[str, str]], task: str) -> Dict[str, str]:
    """The environment a task's `secretAsEnv` gives it; a missing secret or key is the pod's error."""
    env = {}
    for entry in platform.get("secretAsEnv", []):
        name = entry["secretName"]
        if name not in secrets:
            raise StoreError(f"task {task}: secret {name!r} not found: the pod would not start (CreateContainerConfigError)")
        for mapping in entry.get("keyToEnv", []):
            if mapping["secretKey"] not in secrets[name]:
                raise StoreError(f"task {task}: secret {name!r} has no key {mapping['secretKey']!r}: the pod would not "
                                 f"start (CreateContainerConfigError)")
            env[mapping["envVar"]] = secrets[name][mapping["secretKey"]]
    return env


def _access_key(environ: Dict[str, Any]) -> str:
    header = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in header:
        return header.split("Credential=", 1)[1].split("/", 1)[0]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    return (query.get("X-Amz-Credential") or [""])[0].split("/", 1)[0]


def namespace_filter(keys: Dict[str, str]):
    """A WSGI filter refusing what a namespace's keys may not touch; `keys` maps access key -> namespace."""

    def wrap(app):
        def filtered(environ, start_response):
            namespace = keys.get(_access_key(environ))
            if namespace is None:
                return app(environ, start_response)
            bucket, _, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            targets = [key or (query.get("prefix") or [""])[0]]
            if "delete" in query and environ.get("REQUEST_METHOD") == "POST":  # DeleteObjects: keys in the body
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
                targets = re.findall(r"<Key>([^<]*)</Key>", body.decode("utf-8", "replace")) or [""]
            browse = not key and targets == [""] and query.get("delimiter") == ["/"]  # AllowTopLevelDelimitedBrowse
            head = environ.get("REQUEST_METHOD") == "HEAD" and not key  # AllowHeadBucket
            allowed = bucket == stores.KFP_BUCKET and (browse or head or all(
                any(t.startswith(p) for p in stores.namespace_prefixes(namespace)) for t in targets))
            target = targets[0]
            if allowed:
                return app(environ, start_response)
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied"
                    f"</Message><Resource>/{bucket}/{target}</Resource></Error>").encode()
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return filtered
    return wrap


class ClusterStore:
    """The stand-in store, the secrets and the address map run-local gives the launcher and the tasks."""

    def __init__(self, launcher: stores.LauncherConfig, root: str, work_dir: str):
        self.launcher, self.root, self.work_dir = launcher, root, work_dir
        self.kind = root.split("://", 1)[0]
        self.secrets: Dict[str, Dict[str, str]] = {}
        self.addresses: Dict[str, str] = {}
        self.url = ""
        self.admin = {"AWS_ACCESS_KEY_ID": ADMIN_KEY, "AWS_SECRET_ACCESS_KEY": random_secrets.token_hex(16)}
        self.session = launcher.session(root)

    @property
    def saved(self) -> str:
        return os.path.join(self.work_dir, "store")

    @contextlib.contextmanager
    def running(self) -> Iterator["ClusterStore"]:
        if self.kind in ("s3", "minio") and self.session.from_env and not self.session.endpoint:
            raise StoreError(f"{self.root}: with no kfp-launcher provider for {self.kind}://, the launcher and the tasks "
                             f"reach AWS itself; a stand-in needs a provider with an endpoint (compile --launcher-config)")
        keys = {}
        namespace = self.launcher.namespace
        if stores.release(self.launcher.release).multi_user:
            if not namespace:
                raise StoreError(f"--kfp-release {self.launcher.release}: the package was compiled without --namespace")
            keys = {f"{namespace}-key": namespace}
        self.url, stop = start_stand_in(self.kind, namespace_filter(keys) if keys else None)
        try:
            host = self.url.split("://", 1)[1]
            self._secrets(next(iter(keys), ADMIN_KEY))
            if self.kind == "gs":
                self.addresses = {}
            else:
                endpoints = [self.launcher.session(self.root).endpoint]
                endpoints += [entry.get("endpoint") for config in (self.launcher.providers or {}).values()
                              for entry in stores.provider_entries(config)]
                self.addresses = {e.split("://", 1)[-1].rstrip("/"): host for e in endpoints if e}
            with self.as_admin():
                bucket, _ = stores.split(self.root)
                storage.make_bucket(f"{self.kind}://{bucket}")
                self._load()
            yield self
            with self.as_admin():
                self._save()
        finally:
            stop()

    def _secrets(self, access_key: str) -> None:
        """KFP's secret, and each provider's secretRef, holding the keys the launcher and tasks use."""
        secret_key = self.admin["AWS_SECRET_ACCESS_KEY"]
        self.secrets[stores.KFP_SECRET] = dict(zip(stores.KFP_SECRET_KEYS, (access_key, secret_key)))
        for config in (self.launcher.providers or {}).values():
            for entry in stores.provider_entries(config):
                ref = (entry.get("credentials") or {}).get("secretRef") or {}
                if ref.get("secretName"):
                    self.secrets[ref["secretName"]] = {ref.get("accessKeyKey", ""): access_key,
                                                       ref.get("secretKeyKey", ""): secret_key}

    def network_env(self) -> Dict[str, str]:
        """What stands in for the cluster's network in a pod's (and the launcher's) environment."""
        if self.kind == "gs":
            return {"STORAGE_EMULATOR_HOST": self.url}
        return {stores.ADDRESSES_ENV_VAR: json.dumps(self.addresses)}

    @contextlib.contextmanager
    def as_admin(self) -> Iterator[None]:
        """This process reaches the stand-in with unrestricted keys (setting up and saving it)."""
        settings = stores.StoreSettings(minio_endpoint=self.url, s3_endpoint=self.url, access_key=ADMIN_KEY,
                                   secret_key=self.admin["AWS_SECRET_ACCESS_KEY"],
                                   gcs_endpoint=self.url if self.kind == "gs" else "")
        with storage.configured(settings):
            yield

    def _load(self) -> None:
        if os.path.isdir(self.saved):
            for bucket in sorted(os.listdir(self.saved)):
                storage.upload_tree(os.path.join(self.saved, bucket), f"{self.kind}://{bucket}")

    def _save(self) -> None:
        bucket, _ = stores.split(self.root)
        markers = self._markers(bucket)
        if markers:
            raise StoreError(f"{self.kind}://{bucket}/{markers[0]}: a directory marker object; KFP's launcher downloads "
                             f"it as a file and a later task cannot make that folder")
        storage.download_tree(f"{self.kind}://{bucket}", os.path.join(self.saved, bucket))

    def _markers(self, bucket: str) -> List[str]:
        if self.kind == "gs":
            return []
        import boto3  # pylint: disable=import-outside-toplevel
        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                              aws_access_key_id=ADMIN_KEY, aws_secret_access_key=self.admin["AWS_SECRET_ACCESS_KEY"])
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])]
        return sorted(k for k in keys if k.endswith("/"))


HOST_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")  # what any container has of its own
# The pod's HOME, under the task's stand-in "/": empty, as in the image. This machine's home holds
# ~/.aws/credentials and gcloud's, which SDKs read when a pod would have nothing.
POD_HOME = "root"



def image_env(dockerfile: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Dockerfile")) -> Dict[str, str]:
    """The ENV lines of the task image's Dockerfile (`ENV NAME=VALUE ...`)."""
    env = {}
    if os.path.exists(dockerfile):
        for line in open(dockerfile, encoding="utf-8"):
            if line.startswith("ENV "):
                for pair in line[4:].split():
                    name, _, value = pair.partition("=")
                    env[name] = value
    return env


def pod_env(container: Dict[str, Any], platform: Dict[str, Any], secrets: Dict[str, Dict[str, str]], task: str,
            network: Dict[str, str], local_root: str, release: stores.Release) -> Dict[str, str]:
    """A task's environment as its pod has it (`kubeflow.run_local`'s docstring: the pod's environment)."""
    env = {k: os.environ[k] for k in HOST_ENV if k in os.environ}
    env.update(image_env())
    env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
    env.update(pod_secret_env(platform, secrets, task))
    env.update({"KFP_POD_NAME": f"{task.lower()}-{uuid.uuid4().hex[:5]}", "KFP_POD_UID": str(uuid.uuid4())})
    if release.retry_qualified_logs:
        env["KFP_RETRY_INDEX"] = "0"
    env.update(network)
    env[entrypoint.LOCAL_ROOT_ENV] = local_root  # stands for the pod's "/"
    env["HOME"] = os.path.join(local_root, POD_HOME)
    os.makedirs(env["HOME"], exist_ok=True)
    return env
