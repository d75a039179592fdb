"""Tests of the storage layer on a local disk and on a real S3 server (moto, on 127.0.0.1)."""

import os
import socket
import time

import pytest

from components.data import storage, stores
from testsupport import fixtures


@pytest.fixture(scope="module")
def s3():
    with fixtures.stand_in_store("s3://signs-test") as store:
        yield store.url


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    request.getfixturevalue("s3")
    return f"s3://signs-test/{tmp_path.name}"


def test_schemes():
    assert storage.scheme("/a/b") == "" and storage.scheme("minio://b/k") == "minio"
    assert storage.join("gs://b/k/", "x", "y") == "gs://b/k/x/y"
    with pytest.raises(storage.StorageError, match="hdfs://n/p: unsupported scheme hdfs://"):
        storage.scheme("hdfs://n/p")


def test_write_list_read(root):
    storage.write_bytes(storage.join(root, "a", "1.txt"), b"one")
    storage.write_bytes(storage.join(root, "a", "2.txt"), b"two")
    assert storage.isdir(storage.join(root, "a")) and storage.isfile(storage.join(root, "a", "1.txt"))
    assert storage.listdir(storage.join(root, "a")) == ["1.txt", "2.txt"]
    assert storage.glob(storage.join(root, "a", "*.txt")) == [storage.join(root, "a", "1.txt"), storage.join(root, "a", "2.txt")]
    assert storage.read_bytes(storage.join(root, "a", "2.txt")) == b"two"
    assert not storage.exists(storage.join(root, "b"))


def test_create_only_never_overwrites(root):
    target = storage.join(root, "claim")
    assert storage.create_only(target, b"first")
    assert not storage.create_only(target, b"second")
    assert storage.read_bytes(target) == b"first"


def test_trees_round_trip_with_the_last_file_last(root, tmp_path):
    src = tmp_path / "src"
    os.makedirs(src / "variables")
    (src / "variables" / "v.data").write_bytes(b"w" * 1000)
    (src / "saved_model.pb").write_bytes(b"graph")
    storage.upload_tree(str(src), storage.join(root, "model"), last=("saved_model.pb",))
    assert sorted(storage.walk_files(storage.join(root, "model"))) == ["saved_model.pb", "variables/v.data"]
    assert storage.download_tree(storage.join(root, "model"), str(tmp_path / "back")) == 2
    assert (tmp_path / "back" / "variables" / "v.data").read_bytes() == b"w" * 1000


def test_fingerprint_follows_the_files(root):
    data = storage.join(root, "data")
    assert storage.fingerprint(data) == ""
    storage.write_bytes(storage.join(data, "train_signs.h5"), b"x" * 10)
    first = storage.fingerprint(data)
    assert first and storage.fingerprint(data) == first
    storage.write_bytes(storage.join(data, "train_signs.h5"), b"y" * 11)
    assert storage.fingerprint(data) != first
    storage.write_bytes(storage.join(data, "test_signs.h5"), b"z")
    assert len({first, storage.fingerprint(data)}) == 2


def test_no_directory_markers_on_the_store(s3, tmp_path):
    del s3
    storage.makedirs("s3://signs-test/markers/a/b")
    storage.write_bytes("s3://signs-test/markers/a/b/c.txt", b"c")
    import boto3  # pylint: disable=import-outside-toplevel
    client = boto3.client("s3", endpoint_url=os.environ["SIGNS_S3_ENDPOINT"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="signs-test", Prefix="markers/")["Contents"]]
    assert keys == ["markers/a/b/c.txt"]


def test_an_unreachable_store_is_one_line_naming_the_endpoint():
    with storage.configured(stores.StoreSettings(minio_endpoint="http://127.0.0.1:9", access_key="k",
                                            secret_key="SECRET-VALUE")):
        reason = storage.check_reachable("minio://mlpipeline/v2/artifacts")
    assert reason.startswith("minio://mlpipeline/v2/artifacts at http://127.0.0.1:9: ")
    assert "\n" not in reason and "SECRET-VALUE" not in reason


def test_missing_credentials_are_named(s3, monkeypatch):
    del s3
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage.reset()  # boto's chain reads the environment anew
    with pytest.raises(storage.StorageError, match=r"s3://signs-test/x at http://127.0.0.1:\d+: no credentials"):
        storage.exists("s3://signs-test/x")
    storage.reset()


def test_the_storage_layer_reads_no_environment_of_its_own(monkeypatch):
    """Settings enter at the top (startup.start_process); a variable set later changes nothing."""
    with storage.configured(stores.StoreSettings()):
        monkeypatch.setenv("SIGNS_MINIO_ENDPOINT", "http://elsewhere:9000")
        storage.reset()
        assert storage.endpoint("minio://mlpipeline/x") == "http://seaweedfs.kubeflow:9000"  # the newest KFP's store
    with storage.configured(stores.StoreSettings.from_environment({"SIGNS_MINIO_ENDPOINT": "http://mine:9000"})):
        assert storage.endpoint("minio://mlpipeline/x") == "http://mine:9000"


@pytest.mark.slow
def test_a_store_that_never_answers_is_one_line_in_about_a_minute():
    """It held `predict` 183 s, then a traceback."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts (the kernel does), never answers
    port = listener.getsockname()[1]
    settings = stores.StoreSettings.from_environment({"SIGNS_S3_ENDPOINT": f"http://127.0.0.1:{port}",
                                                 "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    started = time.monotonic()
    with storage.configured(settings), pytest.raises(storage.StorageError) as e:
        storage.listdir("s3://silent/serving_model")
    listener.close()
    assert time.monotonic() - started < 90
    assert str(e.value) == f"s3://silent/serving_model at http://127.0.0.1:{port}: the store does not answer"


def test_a_password_in_an_endpoint_is_refused_and_never_shown():
    """`http://u:PASS@host` was printed by predict, serve and deploy --dry-run."""
    settings = stores.StoreSettings.from_environment({"SIGNS_MINIO_ENDPOINT": "http://signs:pa55word@127.0.0.1:9"})
    with storage.configured(settings), pytest.raises(storage.StorageError) as e:
        storage.listdir("minio://mlpipeline/serving_model")
    assert str(e.value) == ("the store endpoint http://<user info>@127.0.0.1:9 carries user:password@; give the keys in "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a secret) instead")
    with storage.configured(settings):
        assert "pa55word" not in storage.endpoint("minio://mlpipeline/x")


def test_the_launchers_path_style_and_retries_reach_the_store_client():
    """The launcher config's forcePathStyle and maxRetries were read and then ignored."""
    configmap = ("data:\n  providers: |\n    s3:\n      default:\n        endpoint: s3.internal.example:9000\n"
                 "        forcePathStyle: false\n        maxRetries: 3\n        credentials: {fromEnv: true}\n")
    settings = stores.StoreSettings(launcher=stores.parse_configmap(configmap, "cm.yaml"))
    with storage.configured(settings):
        client = storage._filesystem("s3://bucket/x")  # pylint: disable=protected-access
    assert client.config_kwargs["s3"] == {"addressing_style": "virtual"}
    assert client.config_kwargs["retries"]["max_attempts"] == 3
    with storage.configured(stores.StoreSettings(launcher=stores.LauncherConfig())):
        client = storage._filesystem("minio://mlpipeline/x")  # pylint: disable=protected-access
    assert client.config_kwargs["s3"] == {"addressing_style": "path"}  # KFP's own store: path style, 5 tries
    assert client.config_kwargs["retries"]["max_attempts"] == 5
