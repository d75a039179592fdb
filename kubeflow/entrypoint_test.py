"""Tests of `kubeflow.entrypoint`: it runs a task from the executor input the open-source launcher sends.

The executor inputs here are shaped as kubeflow/pipelines `backend/src/v2` shapes them: input
artifacts resolved through the metadata client (`name` an MLMD id, `type: {instanceSchema: ""}`,
metadata with `display_name` and `store_session_info`), the driver's `executor-logs` output,
`minio://` URIs whose local copies the launcher keeps under `/minio/`, and the output file in the
task root's local path.
"""

import json
import os
import subprocess
import sys

import pytest

from kubeflow import compile as kfp_compile, entrypoint
from kubeflow.entrypoint import LauncherInputError, adapt, local_path, remote_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = "minio://mlpipeline/v2/artifacts/signs/run-1"
SCHEMA_TYPE = {"instanceSchema": "title: tfx.Schema\ntype: object\n"}


def _launcher_input(local_root):
    """CurateSchema's ExecutorInput as the driver would build it on a default KFP install."""
    return {
        "inputs": {
            "parameterValues": {"classes": "0,1,2,3,4,5", "data_fingerprint": "ab12"},
            "artifacts": {"schema": {"artifacts": [{
                "name": "1042", "uri": f"{ROOT}/SchemaGen/x1/schema", "type": {"instanceSchema": ""},
                "metadata": {"display_name": "schema", "store_session_info": "{}"}}]}}},
        "outputs": {
            "artifacts": {
                "curated_schema": {"artifacts": [{"name": "curated_schema", "uri": f"{ROOT}/CurateSchema/x2/curated_schema",
                                                  "type": SCHEMA_TYPE}]},
                "executor-logs": {"artifacts": [{"name": "executor-logs", "uri": f"{ROOT}/CurateSchema/x2/executor-logs",
                                                 "type": {"schemaTitle": "system.Artifact"}}]}},
            # As the pod sees it; the entrypoint finds it under SIGNS_LAUNCHER_LOCAL_ROOT.
            "outputFile": "/minio/mlpipeline/v2/artifacts/signs/run-1/CurateSchema/x2/output_metadata.json"}}


INPUTS_SPEC = {"artifacts": {"schema": {"artifactType": SCHEMA_TYPE}},
               "parameters": {"classes": {"parameterType": "STRING"}}}


def test_local_paths_are_the_launchers():
    assert local_path("minio://mlpipeline/v2/a/b") == "/minio/mlpipeline/v2/a/b"
    assert local_path("s3://bucket/k") == "/s3/bucket/k"
    assert local_path("gs://bucket/k", "/tmp/x") == "/tmp/x/gcs/bucket/k"
    assert local_path("/data/a") is None
    with pytest.raises(LauncherInputError, match="hdfs://n/a: the KFP launcher makes no local copy"):
        local_path("hdfs://n/a")


def test_adapt_fills_types_drops_executor_logs_and_maps_uris():
    adapted, remote_of = adapt(_launcher_input("/"), INPUTS_SPEC)
    schema = adapted["inputs"]["artifacts"]["schema"]["artifacts"][0]
    assert schema["type"] == SCHEMA_TYPE  # from the task's own spec
    assert schema["uri"] == "/minio/mlpipeline/v2/artifacts/signs/run-1/SchemaGen/x1/schema"
    assert schema["metadata"]["display_name"] == "schema"
    assert set(adapted["outputs"]["artifacts"]) == {"curated_schema"}
    assert adapted["inputs"]["parameterValues"] == {"classes": "0,1,2,3,4,5"}  # the cache key is not TFX's
    assert remote_of["/minio/mlpipeline/v2/artifacts/signs/run-1/CurateSchema/x2/curated_schema"] == \
        f"{ROOT}/CurateSchema/x2/curated_schema"


def test_adapt_keeps_a_type_the_launcher_did_send():
    executor_in = _launcher_input("/")
    executor_in["inputs"]["artifacts"]["schema"]["artifacts"][0]["type"] = {"schemaTitle": "tfx.Schema"}
    adapted, _ = adapt(executor_in, INPUTS_SPEC)
    assert adapted["inputs"]["artifacts"]["schema"]["artifacts"][0]["type"] == {"schemaTitle": "tfx.Schema"}


def test_adapt_refuses_an_untyped_input_the_component_does_not_declare():
    with pytest.raises(LauncherInputError, match="input artifact 'schema' has no type"):
        adapt(_launcher_input("/"), {"artifacts": {}})


def test_remote_output_puts_the_remote_uris_back():
    out = {"artifacts": {"curated_schema": {"artifacts": [{"uri": "/minio/b/k/curated_schema", "metadata": {"a": 1}}]}}}
    restored = remote_output(out, {"/minio/b/k/curated_schema": "minio://b/k/curated_schema"})
    assert restored["artifacts"]["curated_schema"]["artifacts"][0] == {"uri": "minio://b/k/curated_schema", "metadata": {"a": 1}}


@pytest.fixture(scope="module")
def curate_schema_container():
    """CurateSchema's container, as compiled into the package."""
    spec = kfp_compile.build(kfp_compile.CompileConfig(image="registry.example/signs:test"))
    return spec["deploymentSpec"]["executors"]["CurateSchema_executor"]["container"]


def _write_inferred_schema(local_root):
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    schema = schema_pb2.Schema()
    for name, kind in (("image", schema_pb2.BYTES), ("label", schema_pb2.INT), ("source", schema_pb2.BYTES)):
        schema.feature.add(name=name, type=kind).shape.dim.add(size=1)
    directory = os.path.join(local_root, "minio/mlpipeline/v2/artifacts/signs/run-1/SchemaGen/x1/schema")
    os.makedirs(directory)
    with open(os.path.join(directory, "schema.pbtxt"), "w") as f:
        f.write(text_format.MessageToString(schema))


def _run(container, executor_in, local_root, module=None):
    command = [sys.executable] + (["-m", module] if module else container["command"][1:])
    args = [a.replace("{{$}}", json.dumps(executor_in)) for a in container["args"]]
    return subprocess.run(command + args, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **{entrypoint.LOCAL_ROOT_ENV: local_root}))


@pytest.mark.slow
def test_a_compiled_task_runs_from_the_launchers_executor_input(curate_schema_container, tmp_path):
    local_root = str(tmp_path)
    _write_inferred_schema(local_root)
    executor_in = _launcher_input(local_root)
    assert curate_schema_container["command"] == ["python", "-m", "kubeflow.entrypoint"]
    proc = _run(curate_schema_container, executor_in, local_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The output went to the launcher's local copy, which it uploads ...
    curated = os.path.join(local_root, "minio/mlpipeline/v2/artifacts/signs/run-1/CurateSchema/x2/curated_schema/schema.pbtxt")
    assert "int_domain" in open(curated).read()
    # ... and the executor output names the remote URI, which the launcher copies over its own.
    with open(os.path.join(local_root, executor_in["outputs"]["outputFile"].lstrip("/"))) as f:
        written = json.load(f)
    assert written["artifacts"]["curated_schema"]["artifacts"][0]["uri"] == f"{ROOT}/CurateSchema/x2/curated_schema"
    assert "executor-logs" not in written["artifacts"]


@pytest.mark.slow
def test_tfx_own_entrypoint_fails_on_the_same_input(curate_schema_container, tmp_path):
    """tensorflow/tfx#7768: why the package does not run TFX's entrypoint."""
    local_root = str(tmp_path)
    _write_inferred_schema(local_root)
    proc = _run(curate_schema_container, _launcher_input(local_root),
                local_root, module="tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
    assert proc.returncode != 0
    assert "'NoneType' object has no attribute 'get'" in proc.stderr
