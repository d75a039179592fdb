"""The serving directory in TF Serving layout: `<serving_dir>/<integer version>/saved_model.pb`.

Pushes are atomic (copied aside, then renamed into place), never overwrite or delete a version
unless `keep_last` asks for it, and two pushers racing each get a version of their own.
"""

import json
import os
import shutil
import time
import uuid
from typing import Dict, List, Optional

PUSH_INFO = "push_info.json"  # written into each version: where the model came from


def list_versions(serving_dir: str) -> List[int]:
    """Complete versions (integer directories holding saved_model.pb), oldest first."""
    if not os.path.isdir(serving_dir):
        return []
    versions = []
    for name in os.listdir(serving_dir):
        if name.isdigit() and os.path.exists(os.path.join(serving_dir, name, "saved_model.pb")):
            versions.append(int(name))
    return sorted(versions)


def newest_version(serving_dir: str) -> Optional[int]:
    versions = list_versions(serving_dir)
    return versions[-1] if versions else None


def version_dir(serving_dir: str, version: int) -> str:
    return os.path.join(serving_dir, str(version))


def push_info(serving_dir: str, version: int) -> Dict:
    """The push record of a version ({} for versions pushed by something else)."""
    try:
        with open(os.path.join(version_dir(serving_dir, version), PUSH_INFO)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def state(serving_dir: str) -> str:
    """A short fingerprint of what is served, e.g. 'versions=1,2'; changes whenever a push lands."""
    return "versions=" + ",".join(str(v) for v in list_versions(serving_dir))


def push(model_dir: str, serving_dir: str, info: Dict, keep_last: int = 0) -> int:
    """Copies a SavedModel into the next free version of `serving_dir`; returns that version.

    Args:
      model_dir: the SavedModel directory to push.
      serving_dir: the TF Serving base directory; created if missing.
      info: facts about the model, stored as `push_info.json` in the version.
      keep_last: if > 0, versions older than the newest `keep_last` are then deleted.

    Returns:
      The new version number (1 for the first push).
    """
    if not os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"{model_dir}: no saved_model.pb to push")
    os.makedirs(serving_dir, exist_ok=True)
    staging = os.path.join(serving_dir, f".staging-{uuid.uuid4().hex}")
    shutil.copytree(model_dir, staging)
    try:
        version = (newest_version(serving_dir) or 0) + 1
        while True:
            with open(os.path.join(staging, PUSH_INFO), "w") as f:
                json.dump(dict(info, version=version, pushed_at=time.strftime("%Y-%m-%dT%H:%M:%S")), f)
            try:
                # rename(2) is atomic and fails if another pusher took this version first.
                os.rename(staging, version_dir(serving_dir, version))
                break
            except OSError:
                if not os.path.exists(version_dir(serving_dir, version)):
                    raise
                version += 1
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if keep_last > 0:
        for old in list_versions(serving_dir)[:-keep_last]:
            shutil.rmtree(version_dir(serving_dir, old))
    return version
