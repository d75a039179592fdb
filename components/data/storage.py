"""One storage layer for what lives outside KFP's artifacts: data root, serving dir, checkpoints.

A location is a local path or a URL: `gs://bucket/key`, `s3://bucket/key`, or `minio://bucket/key`
(Kubeflow Pipelines' own MinIO, which speaks the S3 API). fsspec does the work: gcsfs for `gs://`,
s3fs for `s3://` and `minio://`, its local filesystem for paths.

Endpoints and credentials come from `stores.StoreSettings`, which each entry point reads from its
environment once and hands over (`configure`, through `startup.start_process`); nothing here reads it:

- In a task of the compiled package, the package's launcher config (KFP release, the
  `kfp-launcher` ConfigMap's providers): `minio://` reaches the release's KFP store
  (`seaweedfs.kubeflow:9000` from 2.16) or the configured provider, `s3://` the configured provider
  or the AWS SDK's chain. Keys come from the secret the package maps to `AWS_ACCESS_KEY_ID` and
  `AWS_SECRET_ACCESS_KEY`, which boto reads.
- On this machine: `SIGNS_MINIO_ENDPOINT` (default: the newest KFP's store) and
  `SIGNS_S3_ENDPOINT` (default: the AWS SDK's chain), keys from boto's chain.
- `gs://`: Google's default credentials, or a secret's service-account JSON; an emulator endpoint.

Object stores have no directories: nothing here writes a `dir/` marker object, so KFP's launcher,
which downloads every object of an artifact as a file, never trips on one.
"""

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tempfile
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from common import redact
from components.data import stores

SCHEMES = ("gs", "s3", "minio")


class StorageError(Exception):
    """A store could not be reached or refused us; the message is one line naming the location."""


class StorageConfigError(StorageError):
    """The store settings themselves are wrong (no retry can help); one line."""


def scheme(location: str) -> str:
    """'gs', 's3', 'minio', or '' for a local path; raises on any other URL scheme."""
    head, sep, _ = location.partition("://")
    if not sep:
        return ""
    if head not in SCHEMES:
        raise StorageError(f"{location}: unsupported scheme {head}://; use gs://, s3://, minio:// or a path")
    return head


def is_remote(location: str) -> bool:
    return bool(scheme(location))


def join(location: str, *parts: str) -> str:
    """Joins path parts onto a location; URLs keep their `scheme://`."""
    if is_remote(location):
        return posixpath.join(location.rstrip("/"), *parts)
    return os.path.join(location, *parts)


_SETTINGS = stores.StoreSettings()


def configure(settings: stores.StoreSettings) -> None:
    """Hands this process's store settings to the storage layer (each entry point, at the top)."""
    global _SETTINGS  # pylint: disable=global-statement
    _SETTINGS = settings
    reset()


def settings() -> stores.StoreSettings:
    return _SETTINGS


@contextlib.contextmanager
def configured(new: stores.StoreSettings):
    """These settings for a while (run-local's launcher, tests), then the earlier ones again."""
    old = _SETTINGS
    configure(new)
    try:
        yield
    finally:
        configure(old)


def session(location: str) -> stores.Session:
    """How this process opens a remote location's bucket (see the module docstring)."""
    return _SETTINGS.session(location)


def endpoint(location: str) -> str:
    """The endpoint a location's store is reached at, for messages ('' for local paths)."""
    kind = scheme(location)
    if kind in ("minio", "s3"):
        try:
            return _SETTINGS.endpoint_url(location) or "the AWS SDK's endpoint"
        except stores.StoreConfigError:  # one that carries a password, or is no host[:port]
            return redact.endpoint_for_messages(_SETTINGS.session(location).endpoint)
    if kind == "gs":
        return _SETTINGS.gcs_endpoint or "Google Cloud Storage"
    return ""


_FILESYSTEMS: Dict[Tuple[str, ...], object] = {}
_LOCK = threading.RLock()  # local_copy holds it while it makes a filesystem


def _filesystem(location: str):
    kind = scheme(location)
    config = _SETTINGS
    store = session(location) if kind in ("s3", "minio") else None
    url, region = (config.endpoint_url(location), store.region) if store else ("", "")
    # The launcher's forcePathStyle and maxRetries (KFP's s3.go / minio.go params) apply here too.
    path_style, attempts = (store.force_path_style, store.max_retries or 2) if store else (True, 2)
    key = (kind, url, region, config.gcs_endpoint if kind == "gs" else "", path_style, attempts)
    with _LOCK:
        if key not in _FILESYSTEMS:
            if kind in ("s3", "minio"):
                import s3fs  # pylint: disable=import-outside-toplevel
                keys = {"key": config.access_key, "secret": config.secret_key} if config.access_key else {}
                _FILESYSTEMS[key] = s3fs.S3FileSystem(
                    endpoint_url=url or None,  # None: botocore's own (AWS_ENDPOINT_URL_S3, then AWS)
                    client_kwargs={"region_name": region} if region else {}, **keys,
                    config_kwargs={"connect_timeout": 10, "read_timeout": 20,  # silent store: ~1 min at 2 tries
                                   "retries": {"max_attempts": attempts, "mode": "standard"},
                                   "s3": {"addressing_style": "path" if path_style else "virtual"}})
            elif kind == "gs":
                import gcsfs  # pylint: disable=import-outside-toplevel
                token = json.loads(config.gcs_token) if config.gcs_token else "anon" if config.gcs_endpoint else None
                _FILESYSTEMS[key] = gcsfs.GCSFileSystem(token=token, retries=2, endpoint_url=config.gcs_endpoint or None)
            else:
                from fsspec.implementations.local import LocalFileSystem  # pylint: disable=import-outside-toplevel
                _FILESYSTEMS[key] = LocalFileSystem(auto_mkdir=True)
    return _FILESYSTEMS[key]


def _path(location: str) -> str:
    """The location as its filesystem names it: 'bucket/key' for URLs, the path itself locally."""
    return location.partition("://")[2] if is_remote(location) else location


def _url(location: str, path: str) -> str:
    """Turns a filesystem path back into a location of the same scheme as `location`."""
    kind = scheme(location)
    return f"{kind}://{path}" if kind else path


@contextlib.contextmanager
def _errors(location: str):
    """Turns a store's exceptions into one-line StorageErrors naming the location and endpoint."""
    try:
        yield
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError):
        raise
    except StorageError:
        raise
    except stores.StoreConfigError as e:
        raise StorageConfigError(str(e)) from None
    except Exception as e:  # pylint: disable=broad-except
        name = type(e).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            reason = "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        elif name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                      "ConnectionError", "ServerDisconnectedError", "ClientOSError"):
            reason = "cannot connect"
        elif name in ("ReadTimeoutError", "ServerTimeoutError", "TimeoutError"):
            reason = "the store does not answer"
        elif isinstance(e, PermissionError):
            reason = "permission denied"
        else:
            reason = str(e).splitlines()[0][:200] if str(e) else name
        where = f" at {endpoint(location)}" if is_remote(location) else ""
        endpoints = [_SETTINGS.session(location).endpoint] if is_remote(location) else []
        raise StorageError(redact.without_userinfo(f"{location}{where}: {reason}", endpoints)) from None


def exists(location: str) -> bool:
    with _errors(location):
        return _filesystem(location).exists(_path(location))


def isdir(location: str) -> bool:
    with _errors(location):
        return _filesystem(location).isdir(_path(location))


def isfile(location: str) -> bool:
    with _errors(location):
        return _filesystem(location).isfile(_path(location))


def listdir(location: str) -> List[str]:
    """Names of the entries directly under a directory (files and sub-directories)."""
    with _errors(location):
        fs = _filesystem(location)
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(_path(location), detail=False))


def glob(pattern: str) -> List[str]:
    """Files and directories matching a glob pattern, as locations of the pattern's scheme."""
    with _errors(pattern):
        return sorted(_url(pattern, p) for p in _filesystem(pattern).glob(_path(pattern)))


def walk_files(location: str) -> Dict[str, Dict]:
    """Every file under a directory: relative path -> the store's info (size, etag or mtime)."""
    with _errors(location):
        fs = _filesystem(location)
        root = _path(location).rstrip("/")
        if not fs.isdir(root):
            return {}
        found = fs.find(root, withdirs=False, detail=True)
        return {posixpath.relpath(p, root) if is_remote(location) else os.path.relpath(p, root): info
                for p, info in found.items()}


def read_bytes(location: str, limit: Optional[int] = None) -> bytes:
    """A file's bytes; with `limit`, at most `limit + 1` of them (so a caller can tell it is too big)."""
    with _errors(location):
        if limit is None:
            return _filesystem(location).cat_file(_path(location))
        if not is_remote(location):
            with open(location, "rb") as f:
                return f.read(limit + 1)
        return _filesystem(location).cat_file(_path(location), start=0, end=limit + 1)


def file_kind(location: str) -> Tuple[str, int]:
    """('file', size) for a regular file or an object; ('fifo', 0), ('device', 0), ('socket', 0) or
    ('directory', 0) for what a reader must not open as a file (a FIFO would block it for good;
    /dev/zero never ends). Follows symbolic links, as a reader would."""
    if is_remote(location):
        with _errors(location):
            info = _filesystem(location).info(_path(location))
        return ("directory", 0) if info.get("type") == "directory" else ("file", int(info.get("size") or 0))
    mode = os.stat(location).st_mode
    if stat.S_ISREG(mode):
        return "file", os.stat(location).st_size
    if stat.S_ISDIR(mode):
        return "directory", 0
    return ("fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"), 0


def write_bytes(location: str, data: bytes) -> None:
    """Writes a whole object (local: a temporary file renamed into place)."""
    with _errors(location):
        if is_remote(location):
            _filesystem(location).pipe_file(_path(location), data)
            return
        os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
        tmp = f"{location}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, location)


def create_only(location: str, data: bytes) -> bool:
    """Writes `data` only if nothing is at `location` yet; returns False if something was.

    Atomic on each store: S3's `If-None-Match: *`, GCS's `ifGenerationMatch=0`, and
    O_CREAT|O_EXCL on a local disk.
    """
    with _errors(location):
        if is_remote(location):
            try:
                _filesystem(location).pipe_file(_path(location), data, mode="create")
            except FileExistsError:
                return False
            return True
        os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
        try:
            fd = os.open(location, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True


def makedirs(location: str) -> None:
    """Makes a local directory; a no-op on object stores (no marker objects)."""
    if not is_remote(location):
        os.makedirs(location, exist_ok=True)


def remove(location: str) -> None:
    with _errors(location):
        fs = _filesystem(location)
        if fs.exists(_path(location)):
            fs.rm(_path(location), recursive=True)


def upload_tree(local_dir: str, location: str, last: Sequence[str] = ()) -> None:
    """Copies every file of a local directory to `location`; the files named in `last` go last.

    Args:
      local_dir: the directory to copy.
      location: where its files go (`location/<relative path>`).
      last: relative paths written after all the others, in order (e.g. `saved_model.pb`, so a
        reader that waits for it never sees a half-copied model).
    """
    files = sorted(os.path.relpath(os.path.join(d, n), local_dir)
                   for d, _, names in os.walk(local_dir) for n in names)
    ordered = [f for f in files if f not in last] + [f for f in last if f in files]
    with _errors(location):
        fs = _filesystem(location)
        for rel in ordered:
            target = join(location, *rel.split(os.sep))
            if is_remote(location):
                fs.put_file(os.path.join(local_dir, rel), _path(target))
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(os.path.join(local_dir, rel), target)


def download_tree(location: str, local_dir: str) -> int:
    """Copies every file under `location` into `local_dir`; returns how many."""
    files = walk_files(location)
    with _errors(location):
        fs = _filesystem(location)
        for rel in files:
            target = os.path.join(local_dir, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs.get_file(_path(join(location, rel)), target)
    return len(files)


_LOCAL_COPIES: Dict[str, str] = {}


def local_copy(location: str) -> str:
    """A local path holding the file at `location`: the path itself, or a copy made once per process.

    For readers that need a real file (h5py reads h5 files at random offsets).
    """
    if not is_remote(location):
        return location
    with _LOCK:
        if location not in _LOCAL_COPIES:
            directory = tempfile.mkdtemp(prefix="signs-copy-")
            target = os.path.join(directory, posixpath.basename(location))
            with _errors(location):
                _filesystem(location).get_file(_path(location), target)
            _LOCAL_COPIES[location] = target
        return _LOCAL_COPIES[location]


def fingerprint(location: str) -> str:
    """A short hash of what is under a directory (names, sizes, etags or mtimes); '' if empty.

    Changes whenever a file under it is added, removed or rewritten.
    """
    files = walk_files(location)
    if not files:
        return ""
    digest = hashlib.sha256()
    for rel in sorted(files):
        info = files[rel]
        stamp = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime") or info.get("LastModified") or ""
        digest.update(f"{rel}\t{info.get('size')}\t{stamp}\n".encode())
    return digest.hexdigest()[:16]


def check_reachable(location: str) -> Optional[str]:
    """None if the store of `location` answers; otherwise the one-line reason."""
    try:
        exists(location)
    except StorageError as e:
        return str(e)
    return None


def make_bucket(location: str) -> None:
    """Creates the bucket of a URL if it does not exist (for stand-in stores and tests)."""
    bucket = _path(location).split("/", 1)[0]
    with _errors(location):
        fs = _filesystem(location)
        if not fs.exists(bucket):
            fs.mkdir(bucket)


def reset() -> None:
    """Forgets the cached filesystems and local copies (after the settings change)."""
    with _LOCK:
        _FILESYSTEMS.clear()
        _LOCAL_COPIES.clear()
    try:
        import fsspec  # pylint: disable=import-outside-toplevel
        for cls in (fsspec.get_filesystem_class("s3"), fsspec.get_filesystem_class("gs")):
            cls.clear_instance_cache()
    except (ImportError, ValueError):
        pass
