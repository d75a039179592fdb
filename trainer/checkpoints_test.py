"""Tests of the resumable training state on a small Keras model (the logic, not the ResNet)."""

import collections
import errno
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from trainer import checkpoints
from testsupport import fixtures
from components.data import storage


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class _Scripted(keras.callbacks.Callback):
    """Overwrites val_accuracy with a scripted sequence, so best/patience are exact."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.values[epoch]


DATA = (np.random.default_rng(0).random((32, 4), dtype=np.float32), np.arange(32) % 3)


def _fit(model, state, epochs, values, initial_epoch=0):
    model.fit(*DATA, batch_size=8, epochs=epochs, initial_epoch=initial_epoch,
              callbacks=[_Scripted(values), state], verbose=0)


def test_early_stopping_and_best_weights_in_memory():
    model = _model()
    state = checkpoints.TrainingState(None, "val_accuracy", patience=2, restore_best=True)
    _fit(model, state, 10, [0.5, 0.8, 0.7, 0.6, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert state.stopped and len(state.history) == 4  # epochs 3 and 4 are not better than 2
    assert (state.best_epoch, state.best_value) == (2, 0.8)
    last = model.get_weights()
    state.finish(model)
    assert state.exported_epoch == 2
    assert any(not np.array_equal(a, b) for a, b in zip(last, model.get_weights()))
    assert {"epoch", "seconds", "loss", "accuracy", "val_accuracy", "learning_rate"} <= set(state.history[0])


def test_no_restore_exports_the_last_epoch():
    model = _model()
    state = checkpoints.TrainingState(None, "val_accuracy", patience=0, restore_best=False)
    _fit(model, state, 3, [0.9, 0.5, 0.4])
    last = model.get_weights()
    state.finish(model)
    assert not state.stopped and state.exported_epoch == 3
    assert all(np.array_equal(a, b) for a, b in zip(last, model.get_weights()))


def test_a_restarted_run_resumes_from_the_last_checkpoint(tmp_path, capsys):
    directory = str(tmp_path / "ckpt")
    values = [0.5, 0.7, 0.6, 0.8, 0.8]
    first = _model()
    state = checkpoints.TrainingState(directory, "val_accuracy", patience=0, restore_best=True)
    _fit(first, state, 3, values)  # "killed" after epoch 3
    saved = json.load(open(os.path.join(directory, checkpoints.STATE_FILE)))
    assert saved["epoch"] == 3 and saved["best_epoch"] == 2
    assert sorted(os.listdir(directory)) == ["best.weights.h5", "epoch-3.weights.h5", "state.json"]

    second = _model()  # a fresh process: new weights, new optimizer
    resumed = checkpoints.TrainingState(directory, "val_accuracy", patience=0, restore_best=True)
    start = resumed.restore(second)
    assert start == 3 and resumed.resumed_from == 3
    assert "Resuming training from the checkpoint of epoch 3" in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert int(second.optimizer.iterations) == int(first.optimizer.iterations) == 12
    _fit(second, resumed, 5, values, initial_epoch=start)
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.best_epoch == 4 and int(second.optimizer.iterations) == 20
    resumed.clear()
    assert not os.path.exists(directory)


def test_training_key_follows_config_and_data(tmp_path):
    data = tmp_path / "train.gz"
    data.write_bytes(b"records")
    splits = {"train": [str(data)], "eval": [str(data)]}
    key = checkpoints.training_key({"epochs": 3, "tensorboard": True}, splits)
    assert key == checkpoints.training_key({"epochs": 3, "tensorboard": False}, splits)  # not in the key
    assert key != checkpoints.training_key({"epochs": 4, "tensorboard": True}, splits)
    data.write_bytes(b"other records")
    assert key != checkpoints.training_key({"epochs": 3, "tensorboard": True}, splits)


@pytest.mark.parametrize("patience,stops_after", [(1, 2), (3, 4)])
def test_patience_counts_epochs_without_improvement(patience, stops_after):
    model = _model()
    state = checkpoints.TrainingState(None, "val_accuracy", patience=patience, restore_best=True)
    _fit(model, state, 8, [0.9] + [0.1] * 7)
    assert len(state.history) == stops_after


def test_checkpoints_on_an_object_store_resume_in_a_new_process(capsys):
    """A checkpoint_root on MinIO or S3 (Kubeflow's default): the pod that resumes has no local copy."""
    with fixtures.stand_in_store("minio://mlpipeline"):
        directory = "minio://mlpipeline/v2/artifacts/checkpoints/abc123"
        values = [0.5, 0.7, 0.6, 0.8, 0.8]
        first = _model()
        state = checkpoints.TrainingState(directory, "val_accuracy", patience=0, restore_best=True)
        _fit(first, state, 3, values)  # "killed" after epoch 3
        assert sorted(storage.walk_files(directory)) == ["best.weights.h5", "epoch-3.weights.h5", "state.json"]
        assert json.loads(storage.read_bytes(f"{directory}/state.json"))["epoch"] == 3

        second = _model()
        resumed = checkpoints.TrainingState(directory, "val_accuracy", patience=0, restore_best=True)
        assert not os.path.exists(os.path.join(resumed.directory, "state.json"))  # a fresh local mirror
        assert resumed.restore(second) == 3
        assert f"Resuming training from the checkpoint of epoch 3 in {directory}" in capsys.readouterr().out
        assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
        assert int(second.optimizer.iterations) == 12
        _fit(second, resumed, 5, values, initial_epoch=3)
        assert sorted(storage.walk_files(directory)) == ["best.weights.h5", "epoch-5.weights.h5", "state.json"]
        resumed.clear()
        assert storage.walk_files(directory) == {}


# HDF5's words when a tmpfs filled during the Trainer's save_weights; h5py raises them as an OSError's
# strerror. HDF5's ctime() ends the first line, so the first line alone says nothing of the cause.
H5PY_FULL_DISK = ("Can't synchronously write data (file write failed: time = Mon Dec  7 22:34:14 2026\n"
                  ", filename = '/tmp/fd/root/checkpoints/1d4af1ba8a51c036/tmp-best.weights.h5', file descriptor "
                  "= 5, errno = 28, error message = 'No space left on device', buf = 0x55d1c2a4e000, total write "
                  "size = 1048576, bytes this sub-write = 1048576, bytes actually written = 18446744073709551615, "
                  "offset = 0)")


@pytest.mark.parametrize("raised", [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.ENOSPC, H5PY_FULL_DISK),
                                    RuntimeError(H5PY_FULL_DISK)], ids=["os", "h5py", "errno-in-text"])
def test_a_full_disk_leaves_no_half_written_checkpoint_and_says_where(tmp_path, monkeypatch, raised):
    """A full disk during the Trainer left a 149 MB tmp-best.weights.h5 behind, the disk still full,
    and an error that named no path (or, from h5py, cut at a time stamp)."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    def fill_the_disk(self, path, overwrite=True):  # writes part of the file, then the disk is full
        with open(path, "wb") as f:
            f.write(b"\0" * 4096)
        raise raised

    monkeypatch.setattr(keras.Model, "save_weights", fill_the_disk)
    target = str(tmp_path / "best.weights.h5")
    with pytest.raises(checkpoints.CheckpointError,
                       match=rf"^{tmp_path}/best\.weights\.h5: the checkpoint could not be written \(No space left on "
                             rf"device\); \d+ bytes free there$"):
        checkpoints._save_weights(model, target)  # pylint: disable=protected-access
    assert os.listdir(tmp_path) == []


def test_a_disk_without_room_is_refused_before_hdf5_writes(tmp_path, monkeypatch):
    """A failed HDF5 write leaves HDF5 unable to shut down, so a disk that cannot take the file is
    refused before HDF5 touches it."""
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2 ** 30, 2 ** 30 - 4096, 4096))
    monkeypatch.setattr(keras.Model, "save_weights", lambda *a, **k: pytest.fail("HDF5 was asked to write"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(checkpoints.CheckpointError, match=r"best\.weights\.h5: the checkpoint could not be written "
                                                          r"\(it needs about \d+ bytes\); 4096 bytes free there$"):
        checkpoints._save_weights(model, str(tmp_path / "best.weights.h5"))  # pylint: disable=protected-access
    assert os.listdir(tmp_path) == []


FULL_TMPFS = """
import sys
import keras
from pipeline import local_runner
from trainer import checkpoints
checkpoints._free_bytes = lambda path: None  # as if the disk filled after the check
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(4096)])
try:
    checkpoints._save_weights(model, sys.argv[1] + "/best.weights.h5")
except checkpoints.CheckpointError as e:
    print(e, e.hdf5, flush=True)
    sys.exit(local_runner.exit_code(e))
"""


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1) to mount a small tmpfs")
def test_a_run_whose_hdf5_write_failed_exits_1_not_139(tmp_path):
    """A real full disk (a 1 MiB tmpfs in a mount namespace of its own): HDF5 fails mid-write, and
    its exit handler would then crash the process (SIGSEGV, exit 139) after the run's error line."""
    small = tmp_path / "small"
    small.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FULL_TMPFS)
    command = (f"mount -t tmpfs -o size=1m tmpfs {small} || exit 77; "
               f"exec {sys.executable} {script} {small}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"this machine cannot mount a tmpfs in a mount namespace: {done.stderr.strip()[-200:]}")
    assert done.stdout.strip() == (f"{small}/best.weights.h5: the checkpoint could not be written "
                                   "(No space left on device) True"), done.stderr[-2000:]
    assert done.returncode == 1, done.stderr[-2000:]
