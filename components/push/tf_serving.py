"""Which TF Serving release loads what the Trainer exports, and the op set each release knows.

KServe's `kserve-tensorflow-serving` runtime runs `tensorflow/serving:2.6.2` unless the
InferenceService names a `runtimeVersion` (kserve/kserve config/runtimes/kustomization.yaml); TF
Serving 2.6 cannot load ops newer than TensorFlow 2.6, and a TF 2.16 export holds some
(`DisableCopyOnRead`, ...). `tf_ops/` holds each release's op set, made from the TensorFlow wheels
by `tf_ops/make_op_list.py` (its docstring has the commands).
"""

import os
from typing import Optional, Set

from components.data import storage


class ReleaseError(ValueError):
    """No TF Serving release, or no op list, for what was asked; one line."""


# TF Serving's release for each TensorFlow minor release it is built on (tensorflow/serving tags;
# a patch release adds no op). The lock pins TensorFlow 2.16.2.
TF_SERVING_RELEASES = {"2.16": "2.16.1"}
KSERVE_DEFAULT_TF_SERVING = "2.6.2"  # kserve-tensorflow-serving's image tag without a runtimeVersion
TF_OPS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf_ops")  # see make_op_list.py there


def runtime_version(tf_version: Optional[str] = None) -> str:
    """The TF Serving release (KServe's runtimeVersion) that loads what `tf_version` exports.

    Args:
      tf_version: the exporting TensorFlow's version, e.g. "2.16.2" (default: the one installed here,
        read from its package metadata without importing it).

    Raises:
      ManifestError: no TF Serving release is known for that TensorFlow.
    """
    if tf_version is None:
        from importlib import metadata  # pylint: disable=import-outside-toplevel
        tf_version = metadata.version("tensorflow")
    minor = ".".join(str(tf_version).split(".")[:2])
    if minor not in TF_SERVING_RELEASES:
        raise ReleaseError(f"TensorFlow {tf_version}: no TF Serving release known for it "
                            f"(known: {', '.join(sorted(TF_SERVING_RELEASES))}); add it to kserve.TF_SERVING_RELEASES")
    return TF_SERVING_RELEASES[minor]


def saved_model_tf_version(model_dir: str) -> Optional[str]:
    """The TensorFlow version recorded in a SavedModel's saved_model.pb (MetaInfoDef.tensorflow_version).

    None when the file does not parse or records none: then `runtime_version` takes the installed one.
    """
    from google.protobuf import message  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    try:
        saved = saved_model_pb2.SavedModel.FromString(storage.read_bytes(storage.join(model_dir, "saved_model.pb")))
    except message.DecodeError:
        return None
    versions = [g.meta_info_def.tensorflow_version for g in saved.meta_graphs if g.meta_info_def.tensorflow_version]
    return versions[0] if versions else None


def release_ops(tf_serving_version: str) -> Set[str]:
    """The ops a TF Serving release's TensorFlow defines (tf_ops/tf-<major>.<minor>.ops)."""
    minor = ".".join(tf_serving_version.split(".")[:2])
    path = os.path.join(TF_OPS_DIR, f"tf-{minor}.ops")
    if not os.path.exists(path):
        raise ReleaseError(f"TF Serving {tf_serving_version}: no op list {path}; make it with tf_ops/make_op_list.py")
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


def saved_model_ops(model_dir: str) -> Set[str]:
    """Every op a SavedModel's graphs and functions use (what TF Serving must know to load it)."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    saved = saved_model_pb2.SavedModel.FromString(storage.read_bytes(storage.join(model_dir, "saved_model.pb")))
    ops = set()
    for graph in saved.meta_graphs:
        ops |= {node.op for node in graph.graph_def.node}
        for function in graph.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    return ops
