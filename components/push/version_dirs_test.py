"""Tests of versioned, atomic pushes into the TF Serving layout."""

import multiprocessing
import os
import socket
import signal
import subprocess
import sys
import time

import pytest

from components.data import startup
from testsupport import fixtures
from components.data import storage
from components.push import version_dirs
from testsupport.saved_models import saved_model


def _fake_model(path, payload="weights"):
    """A small real SavedModel, with a few MB of assets so that a copy takes a moment."""
    return saved_model(path, payload=payload * 100_000)


def test_versions_count_up_and_record_the_source(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving_dir = str(tmp_path / "serving")
    assert version_dirs.newest_version(serving_dir) is None
    assert version_dirs.push(model, serving_dir, {"model_uri": "m1"}) == 1
    assert version_dirs.push(model, serving_dir, {"model_uri": "m2"}) == 2
    assert version_dirs.list_versions(serving_dir) == [1, 2]
    assert version_dirs.push_info(serving_dir, 2)["model_uri"] == "m2"
    assert version_dirs.state(serving_dir) == "versions=1,2"
    assert sorted(os.listdir(serving_dir)) == ["1", "2"]  # nothing staged is left behind


def test_keep_last_deletes_only_older_versions(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving_dir = str(tmp_path / "serving")
    for _ in range(4):
        version_dirs.push(model, serving_dir, {}, keep_last=2)
    assert version_dirs.list_versions(serving_dir) == [3, 4]


def test_a_half_written_version_is_not_a_version(tmp_path):
    serving_dir = tmp_path / "serving"
    os.makedirs(serving_dir / "7" / "variables")  # no saved_model.pb: incomplete
    assert version_dirs.list_versions(str(serving_dir)) == []


def test_only_names_tf_serving_reads_as_int64_are_versions(tmp_path):
    serving_dir = tmp_path / "serving"
    names = ["3", "99999999999999999999", "\u00b2", "007", "1.5", "-4", " 5", "9223372036854775808"]
    for name in names:
        os.makedirs(serving_dir / name)
        (serving_dir / name / version_dirs.SAVED_MODEL).write_bytes(b"")
    assert version_dirs.list_versions(str(serving_dir)) == [3]
    assert [version_dirs.parse_version(n) for n in ("0", "9223372036854775807", "\u0663")] == [0, 2 ** 63 - 1, None]


def test_no_version_is_pushed_past_int64(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving_dir = tmp_path / "serving"
    top = serving_dir / str(version_dirs.MAX_VERSION)
    os.makedirs(top)
    (top / version_dirs.SAVED_MODEL).write_bytes(b"")
    with pytest.raises(version_dirs.PushConflict, match="version 9223372036854775807 is the largest TF Serving reads"):
        version_dirs.push(model, str(serving_dir), {})
    assert sorted(os.listdir(serving_dir)) == [str(version_dirs.MAX_VERSION)]  # nothing staged is left behind


def test_push_refuses_a_directory_without_a_saved_model(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        version_dirs.push(str(tmp_path / "empty"), str(tmp_path / "serving"), {})
    assert not os.path.exists(tmp_path / "serving" / "1")


def _push_after(barrier, model, serving_dir, name, results, env):
    os.environ.update(env)  # a process of its own: its store settings from its environment
    startup.start_process()
    barrier.wait()
    results.put(version_dirs.push(model, serving_dir, {"model_uri": name}))


@pytest.mark.parametrize("where", ["disk", "store"])
def test_two_processes_pushing_at_once_both_land(where, request, tmp_path):
    env = request.getfixturevalue("minio").env if where == "store" else {}
    serving_dir = str(tmp_path / "serving") if where == "disk" else f"minio://mlpipeline/race-{tmp_path.name}/serving_model"
    models = [_fake_model(tmp_path / f"model{i}", payload=f"w{i}") for i in range(2)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_push_after, args=(barrier, m, serving_dir, f"m{i}", results, env))
             for i, m in enumerate(models)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted([results.get(), results.get()]) == [1, 2]
    assert version_dirs.list_versions(serving_dir) == [1, 2]
    sources = sorted(version_dirs.push_info(serving_dir, v)["model_uri"] for v in (1, 2))
    assert sources == ["m0", "m1"]
    for v, info_source in ((1, version_dirs.push_info(serving_dir, 1)["model_uri"]),
                           (2, version_dirs.push_info(serving_dir, 2)["model_uri"])):
        data = storage.read_bytes(storage.join(serving_dir, str(v), "assets", "payload")).decode()
        assert data == f"w{info_source[1]}" * 100_000  # each version is one whole model


# -- on an object store (a real S3 server, moto, on 127.0.0.1, as KFP's MinIO) -------------------

@pytest.fixture(scope="module")
def minio():
    with fixtures.stand_in_store("minio://mlpipeline") as store:
        yield store


def test_pushes_to_an_object_store_count_up(minio, tmp_path):
    del minio
    model = _fake_model(tmp_path / "model")
    serving_dir = "minio://mlpipeline/count-up/serving_model"
    assert version_dirs.newest_version(serving_dir) is None
    assert version_dirs.push(model, serving_dir, {"model_uri": "m1"}) == 1
    assert version_dirs.push(model, serving_dir, {"model_uri": "m2"}, keep_last=1) == 2
    assert version_dirs.list_versions(serving_dir) == [2]
    assert version_dirs.push_info(serving_dir, 2)["model_uri"] == "m2"


def test_a_push_killed_on_the_store_is_invisible_and_never_reused(minio, tmp_path):
    del minio
    serving_dir = "minio://mlpipeline/killed/serving_model"
    # What a pusher killed after its claim and part of the copy leaves: no saved_model.pb.
    storage.write_bytes(f"{serving_dir}/1/push_info.json", b"{}")
    storage.write_bytes(f"{serving_dir}/1/variables/variables.index", b"partial")
    assert version_dirs.list_versions(serving_dir) == []
    assert version_dirs.push(_fake_model(tmp_path / "model"), serving_dir, {}) == 2
    assert storage.read_bytes(f"{serving_dir}/1/variables/variables.index") == b"partial"  # not overwritten


# -- compare-and-push: a model ships only right after the version it was compared against --------

def test_a_gated_push_goes_right_after_its_baseline(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving_dir = str(tmp_path / "serving")
    assert version_dirs.push(model, serving_dir, {}, after=0) == 1
    assert version_dirs.push(model, serving_dir, {}, after=1) == 2
    with pytest.raises(version_dirs.PushConflict, match="^version 2 was pushed while this run was evaluating against version 1; "
                                                   "re-run to compare against it$"):
        version_dirs.push(model, serving_dir, {}, after=1)
    with pytest.raises(version_dirs.PushConflict, match="^version 2 was pushed while this run was evaluating against no serving model"):
        version_dirs.push(model, serving_dir, {}, after=0)
    assert version_dirs.list_versions(serving_dir) == [1, 2]


def test_a_gated_push_on_the_store_refuses_a_claimed_version(minio, tmp_path):
    del minio
    serving_dir = "minio://mlpipeline/gated/serving_model"
    model = _fake_model(tmp_path / "model")
    assert version_dirs.push(model, serving_dir, {}, after=0) == 1
    storage.write_bytes(f"{serving_dir}/2/push_info.json", b"{}")  # another run's push, in progress
    with pytest.raises(version_dirs.PushConflict, match=f"^{serving_dir}/2 is being pushed by another run"):
        version_dirs.push(model, serving_dir, {}, after=1)
    assert version_dirs.list_versions(serving_dir) == [1]


def _gated_push_after(barrier, model, serving_dir, after, results, env):
    os.environ.update(env)
    startup.start_process()
    barrier.wait()
    try:
        results.put(("pushed", version_dirs.push(model, serving_dir, {}, after=after)))
    except version_dirs.PushConflict as e:
        results.put(("refused", str(e)))


@pytest.mark.parametrize("where", ["disk", "store"])
def test_two_runs_gated_on_the_same_baseline_ship_one_model(where, minio, tmp_path):
    """Both were compared against version 1: exactly one ships; the other says why."""
    serving_dir = str(tmp_path / "serving") if where == "disk" else f"minio://mlpipeline/race-gated-{tmp_path.name}/serving_model"
    version_dirs.push(_fake_model(tmp_path / "v1"), serving_dir, {})
    models = [_fake_model(tmp_path / f"model{i}", payload=f"w{i}") for i in range(2)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_gated_push_after, args=(barrier, m, serving_dir, 1, results, minio.env))
             for m in models]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    outcomes = sorted([results.get(), results.get()])
    assert outcomes[0] == ("pushed", 2)
    assert outcomes[1][0] == "refused" and "re-run to compare against it" in outcomes[1][1]
    assert version_dirs.list_versions(serving_dir) == [1, 2]


# Pushes argv[1] to argv[2], and after its third copied file touches argv[3] and stops there, to be killed.
_KILL_SCRIPT = """
import shutil, sys, time
from components.data import startup, storage
from components.push import version_dirs
startup.start_process()
copied = []


def pausing(copy):
    def copy_then_pause(*args, **kwargs):
        result = copy(*args, **kwargs)
        copied.append(args[0])
        if len(copied) == 3:
            open(sys.argv[3], "w").close()
            time.sleep(600)
        return result
    return copy_then_pause


shutil.copy2 = pausing(shutil.copy2)
filesystem = storage._filesystem


def pausing_filesystem(location):
    fs = filesystem(location)
    fs.put_file = pausing(type(fs).put_file.__get__(fs))
    return fs


storage._filesystem = pausing_filesystem
version_dirs.push(sys.argv[1], sys.argv[2], {{}})
"""


@pytest.mark.parametrize("where", ["disk", "store"])
def test_a_push_killed_mid_copy_leaves_no_loadable_half_version(where, minio, tmp_path):
    serving_dir = str(tmp_path / "serving") if where == "disk" else f"minio://mlpipeline/killed-{tmp_path.name}/serving_model"
    big, paused = tmp_path / "big", tmp_path / "paused"
    os.makedirs(big / "variables")
    for i in range(10):
        (big / "variables" / f"part-{i:03d}").write_bytes(os.urandom(100_000))
    (big / "saved_model.pb").write_bytes(b"graph")
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT.format(), str(big), serving_dir, str(paused)],
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            env=dict(os.environ, **minio.env))
    deadline = time.time() + 120
    while time.time() < deadline and not paused.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert paused.exists(), "the push never reached its third file"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = storage.walk_files(serving_dir)
    assert written, "the push had not started copying"
    # TF Serving loads `<integer>/saved_model.pb` only; a killed disk push leaves just its `.staging-*` copy.
    assert not [p for p in written if p.split("/")[0].isdigit() and p.endswith("saved_model.pb")]
    assert version_dirs.list_versions(serving_dir) == []
    assert version_dirs.push(str(big), serving_dir, {}) >= 1  # and the next push lands whole
    if where == "disk":  # and takes away the killed push's copy (its process is gone)
        assert not [n for n in os.listdir(serving_dir) if n.startswith(version_dirs.STAGING_PREFIX)]


def test_a_push_that_fails_mid_copy_leaves_no_copy_behind(tmp_path, monkeypatch):
    """A full disk: the copy fails part-way; its half copy is removed instead of keeping the disk full."""
    model = _fake_model(tmp_path / "model")
    serving_dir = tmp_path / "serving"
    real_copy, copied = version_dirs.shutil.copy2, []

    def copy_until_the_disk_is_full(src, dst, **kwargs):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(real_copy(src, dst, **kwargs))

    monkeypatch.setattr(version_dirs.shutil, "copy2", copy_until_the_disk_is_full)
    with pytest.raises(storage.StorageError, match="No space left on device"):
        version_dirs.push(model, str(serving_dir), {})
    assert copied and os.listdir(serving_dir) == []


def test_a_live_push_s_copy_is_left_alone(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving_dir = tmp_path / "serving"
    os.makedirs(serving_dir)
    ours = serving_dir / f"{version_dirs.STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-0000abcd"  # this process: alive
    other_host = serving_dir / f"{version_dirs.STAGING_PREFIX}elsewhere-1-0000abcd"
    for d in (ours, other_host):
        os.makedirs(d)
    assert version_dirs.push(model, str(serving_dir), {}) == 1
    assert ours.is_dir() and other_host.is_dir()
