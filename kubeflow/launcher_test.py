"""Tests of what run-local plays of the driver and launcher, against the backend's own expectations."""

import pytest

from kubeflow import launcher

MODEL_SCHEMA = "title: kfp.Model\ntype: object\nproperties:\n  framework:\n    type: string\n  framework_version:\n    type: string\n"


def test_fingerprints_match_kfps_golden_values():
    """kubeflow/pipelines 2.17.0 backend/src/v2/cacheutils/cache_test.go, TestGenerateFingerPrint."""
    key = {"inputArtifactNames": {"dataset_one": {"artifactNames": ["1"]}, "dataset_two": {"artifactNames": ["2"]}},
           "inputParameterValues": {"message": "Some string value", "num_steps": 5},
           "outputArtifactsSpec": {
               "model": {"name": "model", "type": {"instanceSchema": MODEL_SCHEMA}, "metadata": {"name": "model"}},
               "metrics": {"name": "metrics", "type": {"schemaTitle": "kfp.Metrics"}, "metadata": {"name": "metrics"}}},
           "outputParametersSpec": {"output_parameter_one": "STRING", "output_parameter_two": "INT"},
           "containerSpec": {"cmdArgs": ["sh", "ec", "test"], "image": "python:3.11"}}
    assert launcher.key_fingerprint(key) == "b498530c9016917298999ec0b01f364a180f8a3862bea0fa672a383ca3f22e4e"
    other = {"inputArtifactNames": {"dataset": {"artifactNames": ["10"]}},
             "outputParametersSpec": {"output_parameter": "DOUBLE"},
             "containerSpec": {"cmdArgs": ["sh", "ec", "run"], "image": "python:3.11"}}
    assert launcher.key_fingerprint(other) == "3d9a2a778fa3174c6cfc6e639c507c265b5f21ef6e5b1dd70b236462cc6da464"


@pytest.mark.parametrize("value, text", [(5, "5"), (1.5, "1.5"), (1e-7, "1e-7"), (1e21, "1e+21"), (0.000001, "0.000001"),
                                         (123456789.0, "123456789"), ("<a&b>", '"\\u003ca\\u0026b\\u003e"'),
                                         ({"b": [True, None], "a": "é"}, '{"a":"é","b":[true,null]}')])
def test_go_json(value, text):
    assert launcher.go_json(value) == text


def _task_key(output_metadata=None, pvcs=()):
    component = {"outputDefinitions": {"artifacts": {"model": {"artifactType": {"schemaTitle": "system.Model"}}},
                                       "parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}}
    executor_in = {"inputs": {"parameterValues": {"x": 1}, "artifacts": {}},
                   "outputs": {"artifacts": launcher.provision_outputs(component, "minio://b/run/t/salt", True),
                               "parameters": {"n": {"outputFile": "/tmp/kfp/outputs/n"}}}}
    if output_metadata:
        executor_in["outputs"]["artifacts"]["model"]["artifacts"][0]["metadata"] = output_metadata
    return launcher.cache_key({}, component, {"image": "i", "command": ["c"]}, executor_in, pvcs)


def test_the_cache_key_holds_what_cache_go_holds():
    """Output types and metadata, output-parameter types and PVC names change the key; URIs do not."""
    assert _task_key() == _task_key()
    assert _task_key({"k": 1}) != _task_key()
    assert _task_key(pvcs=("data",)) != _task_key()
    custom = launcher.cache_key({"cachingOptions": {"cacheKey": "k"}, "componentRef": {"name": "comp"}}, {}, {}, {})
    assert len(custom) == 64 and custom != _task_key()


def test_the_driver_adds_executor_logs_only_when_logs_are_published():
    component = {"outputDefinitions": {"artifacts": {"model": {"artifactType": {"schemaTitle": "tfx.Model"}}}}}
    outputs = launcher.provision_outputs(component, "minio://b/r/t/s", True)
    assert outputs["executor-logs"]["artifacts"][0] == {"name": "executor-logs", "uri": "minio://b/r/t/s/executor-logs",
                                                        "type": {"schemaTitle": "system.Artifact"}}
    assert sorted(launcher.provision_outputs(component, "minio://b/r/t/s", False)) == ["model"]
    qualified = launcher.qualify_logs(outputs)
    assert qualified["executor-logs"]["artifacts"][0]["uri"] == "minio://b/r/t/s/executor-logs-0"
    assert launcher.qualify_logs(qualified) == qualified  # once


def test_add_default_params_fills_only_missing_values():
    component = {"inputDefinitions": {"parameters": {"a": {"defaultValue": 1}, "b": {"defaultValue": 2}, "c": {}}}}
    filled = launcher.add_default_params({"inputs": {"parameterValues": {"a": 5}}}, component)
    assert filled["inputs"]["parameterValues"] == {"a": 5, "b": 2}


def test_merge_keeps_provisioned_metadata_keys_and_takes_custom_path_from_2_15():
    provisioned = {"name": "m", "uri": "minio://b/x", "metadata": {"kept": 1, "both": "old"}}
    reported = {"uri": "minio://b/y", "metadata": {"both": "new"}, "customPath": "/data/m"}
    merged = launcher.merge_output(reported, provisioned, custom_path=True)
    assert merged == {"name": "m", "uri": "minio://b/y", "metadata": {"kept": 1, "both": "new"}, "customPath": "/data/m"}
    assert "customPath" not in launcher.merge_output(reported, provisioned, custom_path=False)


def test_outputs_must_lie_under_the_root():
    assert launcher.upload_key("minio://mlpipeline/v2/artifacts/p/r/t/o", "minio://mlpipeline/v2/artifacts") == "p/r/t/o"
    with pytest.raises(launcher.LaunchError, match="does not have expected bucket prefix"):
        launcher.upload_key("minio://mlpipeline/elsewhere/o", "minio://mlpipeline/v2/artifacts")


def test_ml_metadata_converts_values_as_the_launcher_records_them(tmp_path):
    store = launcher.open_metadata(str(tmp_path / "mlmd.sqlite"))
    execution = launcher.record_execution(store, "run-1", "Trainer", "complete")
    launcher.record_outputs(store, execution, {"model": {
        "uri": "minio://b/m", "type": {"schemaTitle": "tfx.Model"},
        "metadata": {"n": 3, "ok": True, "names": ["a", "b"], "nested": {"k": 1}, "s": "x"}}}, '{"Provider":"minio"}')
    [model] = launcher.read_outputs(store, execution).values()
    assert model["uri"] == "minio://b/m" and model["name"].isdigit()  # the MLMD id
    assert model["metadata"] == {"n": 3.0, "ok": 1.0, "names": {"list": ["a", "b"]}, "nested": {"struct": {"k": 1.0}},
                                 "s": "x", "display_name": "model", "store_session_info": '{"Provider":"minio"}'}
    with pytest.raises(launcher.LaunchError, match="output 'model', metadata 'gone': unknown/unsupported value type null"):
        launcher.record_outputs(store, execution, {"model": {"uri": "minio://b/n", "type": {"schemaTitle": "tfx.Model"},
                                                             "metadata": {"gone": None}}}, "{}")
