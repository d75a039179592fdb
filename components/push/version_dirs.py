"""The serving directory in TF Serving layout: `<serving_dir>/<integer version>/saved_model.pb`.

The serving directory is a local path or an object-store URL (`components.data.storage`). A version
counts once its `saved_model.pb` is there, and that file is always written last:

- on a local disk, a push is copied aside and renamed into place (rename(2) is atomic and fails
  if another pusher took that version first);
- on an object store, a push first claims its version with a create-only write of
  `<version>/push_info.json` (S3 `If-None-Match`, GCS `ifGenerationMatch=0`), then copies the
  model's files, `saved_model.pb` last.

So no reader ever sees a half-written version, no version is ever overwritten, and two pushers
racing each get a version of their own. Versions are deleted only when `keep_last` asks for it.

A gated push (`after=N`: the model was compared against version N, 0 for none) goes into version
N+1 or nowhere: the same atomic rename or create-only claim makes it a compare-and-swap, so a
model never ships past a version it was not compared against. Versions that cannot be served
(`version_problem`: a garbage `saved_model.pb`, truncated variables) are never a baseline: a
gated push goes past them.
"""

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Tuple

from components.data import storage

PUSH_INFO = "push_info.json"  # written into each version: where the model came from
SAVED_MODEL = "saved_model.pb"
STAGING_PREFIX = ".staging-"  # a disk push copies into <serving_dir>/.staging-<host>-<pid>-<id>, then renames it


MAX_VERSION = 2 ** 63 - 1  # TF Serving reads a version directory's name as an int64


def parse_version(name: str) -> Optional[int]:
    """The version a directory name stands for, or None: ASCII decimal digits within int64, as TF
    Serving's file system source reads them (`safe_strto64`); `²`, `99999999999999999999` and
    `1.5` are not versions. TF Serving also reads a sign, spaces and leading zeros; the Pusher
    writes none of them, and a version is found at `version_dir`, so those are not versions here."""
    if not name or len(name) > 19 or not all("0" <= c <= "9" for c in name) or (name[0] == "0" and name != "0"):
        return None
    version = int(name)
    return version if version <= MAX_VERSION else None


def list_versions(serving_dir: str) -> List[int]:
    """Complete versions (version directories holding saved_model.pb), oldest first."""
    if not storage.isdir(serving_dir):
        return []
    return sorted(version for version in map(parse_version, storage.listdir(serving_dir))
                  if version is not None and storage.exists(storage.join(serving_dir, str(version), SAVED_MODEL)))


def newest_version(serving_dir: str) -> Optional[int]:
    versions = list_versions(serving_dir)
    return versions[-1] if versions else None


def version_dir(serving_dir: str, version: int) -> str:
    return storage.join(serving_dir, str(version))


def push_info(serving_dir: str, version: int) -> Dict:
    """The push record of a version ({} for versions pushed by something else)."""
    try:
        return json.loads(storage.read_bytes(storage.join(version_dir(serving_dir, version), PUSH_INFO)))
    except (OSError, ValueError):
        return {}


def state(serving_dir: str) -> str:
    """A short fingerprint of what is served, e.g. 'versions=1,2'; changes whenever a push lands."""
    return "versions=" + ",".join(str(v) for v in list_versions(serving_dir))


def version_problem(serving_dir: str, version: int) -> Optional[str]:
    """Why a pushed version cannot be served, in a few words; None when it can."""
    location = version_dir(serving_dir, version)
    if not storage.is_remote(location):
        return model_problem(location)
    with tempfile.TemporaryDirectory(prefix="signs-check-") as local:
        try:
            storage.download_tree(location, local)
        except storage.StorageError as e:
            return str(e)
        return model_problem(local)


def model_problem(model_dir: str) -> Optional[str]:
    """Why a local SavedModel directory cannot be served, in a few words; None when it can.

    Reads what TF Serving reads, without building the model (a second for the ResNet): every file
    is a regular file (a FIFO would block the reader for good), `saved_model.pb` parses and holds a
    graph tagged `serve`, and every variable of the checkpoint reads whole.
    """
    for folder, _, names in os.walk(model_dir):
        for name in names:
            path = os.path.join(folder, name)
            try:
                regular = storage.file_kind(path)[0] == "file"
            except OSError as e:
                return f"{os.path.relpath(path, model_dir)}: {e.strerror}"
            if not regular:
                return f"{os.path.relpath(path, model_dir)} is not a regular file"
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    try:
        with open(os.path.join(model_dir, SAVED_MODEL), "rb") as f:
            proto = saved_model_pb2.SavedModel.FromString(f.read())
    except OSError as e:
        return f"{SAVED_MODEL}: {e.strerror}"
    except DecodeError:
        return f"{SAVED_MODEL} is not a SavedModel"
    if not any("serve" in graph.meta_info_def.tags for graph in proto.meta_graphs):
        return f"{SAVED_MODEL} holds no graph tagged 'serve'"
    prefix = os.path.join(model_dir, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        return "variables/variables.index is missing"
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except  (OpError, IndexError "Read less bytes", ...)
        return f"its variables do not read ({(str(getattr(e, 'message', e)) or type(e).__name__).splitlines()[0][:120]})"
    return None


def newest_servable(serving_dir: str) -> Tuple[Optional[int], List[Tuple[int, str]]]:
    """The newest version that can be served (None if none can), and the newer ones that cannot,
    each with why."""
    skipped = []
    for version in reversed(list_versions(serving_dir)):
        problem = version_problem(serving_dir, version)
        if problem is None:
            return version, skipped
        skipped.append((version, problem))
    return None, skipped


def describe_skipped(serving_dir: str, skipped: List[Tuple[int, str]]) -> str:
    """One line naming the versions that cannot be served, e.g. for the run's log and the review."""
    return "; ".join(f"version {v} ({version_dir(serving_dir, v)}) cannot be served: {why}" for v, why in skipped)


class PushConflict(Exception):
    """A gated push found a newer version than the one its model was compared against; one line."""


def _conflict(serving_dir: str, after: int) -> PushConflict:
    newest = newest_version(serving_dir)
    if newest is not None and newest > after:
        return PushConflict(f"version {newest} was pushed while this run was evaluating against "
                            f"{'version ' + str(after) if after else 'no serving model'}; re-run to compare against it")
    return PushConflict(f"{version_dir(serving_dir, after + 1)} is being pushed by another run (or a push was killed "
                        f"there: delete it if no push is running); re-run to compare against it")


def _info(info: Dict, version: int) -> bytes:
    return json.dumps(dict(info, version=version, pushed_at=time.strftime("%Y-%m-%dT%H:%M:%S"))).encode()


def push(model_dir: str, serving_dir: str, info: Dict, keep_last: int = 0, after: Optional[int] = None) -> int:
    """Copies a SavedModel into the next free version of `serving_dir`; returns that version.

    Args:
      model_dir: the local SavedModel directory to push.
      serving_dir: the TF Serving base directory, a path or a gs://, s3://, minio:// URL.
      info: facts about the model, stored as `push_info.json` in the version.
      keep_last: if > 0, versions older than the newest `keep_last` are then deleted.
      after: the version the model was compared against (0: none was serving); the push then
        goes into version `after + 1` only.

    Returns:
      The new version number (1 for the first push).

    Raises:
      PushConflict: `after` is given and another version landed since.
    """
    if not os.path.exists(os.path.join(model_dir, SAVED_MODEL)):
        raise FileNotFoundError(f"{model_dir}: no saved_model.pb to push")
    claim = None  # a gated push's one version
    if after is not None:
        newer = [v for v in list_versions(serving_dir) if v > after]
        # Versions that cannot be served were never a baseline: the push goes after them.
        if (newest_version(serving_dir) or 0) < after or any(version_problem(serving_dir, v) is None for v in newer):
            raise _conflict(serving_dir, after)
        claim = (newer[-1] if newer else after) + 1
    _check_room(serving_dir, claim if claim is not None else (newest_version(serving_dir) or 0) + 1)
    if storage.is_remote(serving_dir):
        version = _push_to_store(model_dir, serving_dir, info, claim, after)
    else:
        version = _push_to_disk(model_dir, serving_dir, info, claim, after)
    if keep_last > 0:
        for old in list_versions(serving_dir)[:-keep_last]:
            storage.remove(version_dir(serving_dir, old))
    return version


def _check_room(serving_dir: str, version: int) -> None:
    """Refuses a version TF Serving could not read (past int64), before anything is copied."""
    if version > MAX_VERSION:
        raise PushConflict(f"{serving_dir}: version {version - 1} is the largest TF Serving reads (int64); no "
                           f"version can follow it: push to another serving dir")


def _staging_name() -> str:
    return f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_stale_staging(serving_dir: str) -> None:
    """Removes the copies of pushes that were killed (their process on this host is gone), so a
    killed push does not hold its model's size of the disk for good."""
    host = socket.gethostname()
    for name in os.listdir(serving_dir):
        if not name.startswith(STAGING_PREFIX):
            continue
        owner, _, pid = name[len(STAGING_PREFIX):].rpartition("-")[0].rpartition("-")
        if owner != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still pushing
        except ProcessLookupError:
            shutil.rmtree(os.path.join(serving_dir, name), ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's


def _push_to_disk(model_dir: str, serving_dir: str, info: Dict, claim: Optional[int], after: Optional[int]) -> int:
    os.makedirs(serving_dir, exist_ok=True)
    _remove_stale_staging(serving_dir)
    staging = os.path.join(serving_dir, _staging_name())
    try:
        storage.upload_tree(model_dir, staging)  # inside the try: a full disk leaves no half copy behind
        version = (newest_version(serving_dir) or 0) + 1 if claim is None else claim
        while True:
            with open(os.path.join(staging, PUSH_INFO), "wb") as f:
                f.write(_info(info, version))
            try:
                # rename(2) is atomic and fails if another pusher took this version first.
                os.rename(staging, version_dir(serving_dir, version))
                return version
            except OSError:
                if not os.path.exists(version_dir(serving_dir, version)):
                    raise
                if claim is not None:
                    raise _conflict(serving_dir, after) from None
                version += 1
                _check_room(serving_dir, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _push_to_store(model_dir: str, serving_dir: str, info: Dict, claim: Optional[int], after: Optional[int]) -> int:
    version = (newest_version(serving_dir) or 0) + 1 if claim is None else claim
    # A claimed version may be a push in progress, or one killed part-way: either way not ours.
    while not storage.create_only(storage.join(version_dir(serving_dir, version), PUSH_INFO),
                                  _info(info, version)):
        if claim is not None:
            raise _conflict(serving_dir, after)
        version += 1
        _check_room(serving_dir, version)
    target = version_dir(serving_dir, version)
    try:
        storage.upload_tree(model_dir, target, last=(SAVED_MODEL,))
    except BaseException:
        # Without saved_model.pb the version is invisible; drop what was copied, if we still can.
        try:
            storage.remove(target)
        except storage.StorageError:
            pass
        raise
    return version
