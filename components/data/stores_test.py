"""Tests of the launcher's store resolution, against KFP's own test table and the releases' defaults."""

import json
import os

import pytest
import yaml

from components.data import stores

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")


def _kfp_cases():
    with open(os.path.join(TESTDATA, "kfp_session_cases.json")) as f:
        cases = json.load(f)["cases"]
    with open(os.path.join(TESTDATA, "kfp_provider_cases.yaml")) as f:
        providers = {c["name"]: yaml.safe_load(c["value"]) for c in yaml.safe_load(f)["cases"]}
    return [pytest.param(c, providers.get(c["case"]), id=c["msg"]) for c in cases]


@pytest.mark.parametrize("case, providers", _kfp_cases())
def test_sessions_match_kfps_own_table(case, providers):
    """KFP 2.17's TestGetBucketSessionInfo: every provider case gives the launcher's exact params."""
    config = stores.LauncherConfig(providers=providers)
    if case["error"]:
        with pytest.raises(stores.StoreConfigError, match=case["errorMsg"]):
            config.session_info(case["pipelineRoot"])
    else:
        assert config.session_info(case["pipelineRoot"]) == case["expected"]


@pytest.mark.parametrize("release, endpoint", [("2.5", "minio-service.kubeflow:9000"), ("2.15", "minio-service.kubeflow:9000"),
                                               ("2.16", "seaweedfs.kubeflow:9000"), ("2.17", "seaweedfs.kubeflow:9000")])
def test_the_default_store_of_each_release(release, endpoint):
    session = stores.LauncherConfig(release=release).session("minio://mlpipeline/v2/artifacts")
    assert (session.endpoint, session.region, session.disable_ssl) == (endpoint, "minio", True)
    assert (session.secret_name, session.access_key_key, session.secret_key_key) == (
        "mlpipeline-minio-artifact", "accesskey", "secretkey")
    assert session.endpoint_url() == f"http://{endpoint}"
    assert stores.DEFAULT_RELEASE == "2.17" and stores.LauncherConfig().session("minio://b/k").endpoint == \
        "seaweedfs.kubeflow:9000"


def test_s3_without_a_provider_is_the_sdks_chain_and_with_one_its_endpoint():
    assert stores.LauncherConfig().session("s3://bucket/x") == stores.Session(
        "s3", True, params=(("fromEnv", "true"),))
    configmap = """
apiVersion: v1
kind: ConfigMap
metadata: {name: kfp-launcher}
data:
  defaultPipelineRoot: s3://bucket/signs
  providers: |
    s3:
      default:
        endpoint: s3.internal.example:9000
        region: eu-1
        disableSSL: true
        credentials: {fromEnv: false, secretRef: {secretName: s3-keys, accessKeyKey: id, secretKeyKey: key}}
      Overrides:
        - {bucketName: other, keyPrefix: team/, endpoint: https://other.example, credentials: {fromEnv: true}}
"""
    config = stores.parse_configmap(configmap, "cm.yaml")
    assert config.default_pipeline_root == "s3://bucket/signs"
    session = config.session("s3://bucket/signs/data")
    assert session.endpoint_url() == "http://s3.internal.example:9000" and session.region == "eu-1"
    assert config.secrets(["s3://bucket/signs"]) == [("s3-keys", {"id": "AWS_ACCESS_KEY_ID", "key": "AWS_SECRET_ACCESS_KEY"})]
    other = config.session("s3://other/team/x")  # "Overrides", as the Go struct tags it
    assert other.endpoint_url() == "https://other.example" and other.from_env and not other.secret_name
    assert stores.LauncherConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("text, message", [
    ("data: [1, 2]", "cm.yaml: not a kfp-launcher ConfigMap"),
    ("data: {providers: 'azure: {}'}", r"cm.yaml: providers has \['azure'\]"),
    ("data: {providers: [unclosed", "cm.yaml: not a kfp-launcher ConfigMap"),
])
def test_a_bad_configmap_is_one_line_naming_it(text, message):
    with pytest.raises(stores.StoreConfigError, match=message):
        stores.parse_configmap(text, "cm.yaml")


def test_a_provider_without_credentials_is_refused_as_the_driver_refuses_it():
    config = stores.LauncherConfig(providers={"minio": {"default": {"endpoint": "x:9000"}}})
    with pytest.raises(stores.StoreConfigError, match="providers.minio: invalid provider config: missing default credentials"):
        config.session("minio://mlpipeline/v2")


def test_namespace_roots_and_prefixes():
    """The profile controller's root and key prefixes (sync.py)."""
    assert stores.namespace_root("team-a") == "minio://mlpipeline/private-artifacts/team-a/v2/artifacts"
    stores.check_namespace_root(stores.namespace_root("team-a"), "team-a")
    stores.check_namespace_root("minio://mlpipeline/shared/signs", "team-a")
    for outside in ("minio://mlpipeline/v2/artifacts", "minio://mlpipeline/private-artifacts/team-b/x",
                    "minio://other/private-artifacts/team-a/x", "minio://mlpipeline/private-artifacts/team-ab/x"):
        with pytest.raises(stores.StoreConfigError, match=f"--pipeline-root {outside}: outside what namespace team-a"):
            stores.check_namespace_root(outside, "team-a")
    with pytest.raises(stores.StoreConfigError, match="not a Kubernetes namespace name"):
        stores.check_namespace_root(stores.namespace_root("x"), "Team_A")


def test_tasks_with_two_sets_of_keys_are_refused():
    config = stores.LauncherConfig(providers={"s3": {"default": {"endpoint": "a:1", "credentials": {
        "secretRef": {"secretName": "s3-keys", "accessKeyKey": "a", "secretKeyKey": "b"}}}}})
    with pytest.raises(stores.StoreConfigError, match="a task has one set of AWS_ACCESS_KEY_ID"):
        config.secrets(["minio://mlpipeline/v2/artifacts", "s3://bucket/data"])
