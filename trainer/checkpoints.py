"""Training state that survives a killed run: per-epoch checkpoints, best weights, early stopping.

A TFX execution writes to a new output directory each time, so checkpoints cannot live there:
they live under `<checkpoint_root>/<key>/`, where the key hashes everything the training depends
on (the TrainConfig and the bytes of the train and eval records). A re-run of the same training
finds them; any other training gets a directory of its own.

    <key>/state.json            epoch, history, best value and epoch, early-stopping count
    <key>/epoch-<N>.weights.h5  model and optimizer after epoch N (the newest only)
    <key>/best.weights.h5       model weights of the best epoch so far

Each file is written under a temporary name and renamed into place, and state.json is renamed
last, so a run killed at any moment leaves the previous complete checkpoint. On an object store
(`gs://`, `s3://`, `minio://`, through `components.data.storage`) the files are written to a local
mirror and uploaded, state.json last; each upload is one whole object.
"""

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from components.data import storage

STATE_FILE = "state.json"
BEST_FILE = "best.weights.h5"
# Config fields that do not change what is trained: a different value still resumes.
_NOT_IN_KEY = ("checkpoint", "checkpoint_root", "tensorboard", "max_image_pixels")


def _say(message: str) -> None:
    print(message, flush=True)  # beside Keras's epoch lines on the console
    logging.info(message)


def training_key(config: Dict[str, Any], splits: Dict[str, List[str]]) -> str:
    """A hex key of a training's inputs: the config, and each split's record bytes.

    Args:
      config: the TrainConfig as a dict.
      splits: split name -> the split's file patterns.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in config.items() if k not in _NOT_IN_KEY},
                             sort_keys=True).encode())
    for name in sorted(splits):
        digest.update(name.encode())
        for path in sorted(f for p in splits[name] for f in tf.io.gfile.glob(p)):
            with tf.io.gfile.GFile(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


class CheckpointError(OSError):
    """A checkpoint could not be written (a full disk, most often); one line naming the file.

    `hdf5` is true when HDF5 itself failed mid-write: the library is then wedged, and its own exit
    handler crashes the process (SIGSEGV in H5_term_library), so the runner leaves without it.
    """
    hdf5 = False


def _reason(error: Exception) -> str:
    """Why a write failed, in one line: the OS's words for its errno, wherever the error carries it.
    HDF5 (through h5py) says "file write failed: time = <ctime>\\n, ..., errno = 28, ..."."""
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)  # h5py's OSError carries HDF5's whole message as its strerror
    found = re.search(r"\berrno = (\d+)", str(error))
    if found:
        return os.strerror(int(found.group(1)))
    lines = str(error).strip().splitlines()
    return lines[0][:160] if lines else type(error).__name__


def _free_bytes(path: str) -> Optional[int]:
    if storage.is_remote(path):
        return None
    try:
        return shutil.disk_usage(os.path.dirname(path) or ".").free
    except OSError:
        return None


def _written(path: str, tmp: str, write, need: int = 0, hdf5: bool = False) -> None:
    """Runs `write` into `tmp`, then renames it to `path`; on any failure removes `tmp` and raises
    CheckpointError naming `path` and the free space left, so a full disk is said as such and is
    not left fuller by a half-written file. A disk without `need` bytes free is refused before
    anything is written (an HDF5 write that fails leaves HDF5 unable to shut down)."""
    free = _free_bytes(path)
    if free is not None and free < need:
        raise CheckpointError(f"{path}: the checkpoint could not be written (it needs about {need} bytes); "
                              f"{free} bytes free there")
    try:
        write()
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except Exception as e:  # pylint: disable=broad-except  (OSError, h5py's RuntimeError, TF's OpError)
        try:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        except Exception:  # pylint: disable=broad-except  (what can be removed is; the error below says why)
            pass
        free = _free_bytes(path)
        error = CheckpointError(f"{path}: the checkpoint could not be written ({_reason(e)})"
                                + (f"; {free} bytes free there" if free is not None else ""))
        error.hdf5 = hdf5
        raise error from e


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"

    def write():
        with tf.io.gfile.GFile(tmp, "w") as f:
            json.dump(value, f, indent=1)
    _written(path, tmp, write)


def _save_weights(model: keras.Model, path: str) -> None:
    tmp = os.path.join(os.path.dirname(path), "tmp-" + os.path.basename(path))  # keeps .weights.h5
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.weights) + (list(optimizer.variables) if optimizer else [])
    need = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    _written(path, tmp, lambda: model.save_weights(tmp, overwrite=True), need=need + need // 10 + 2 ** 20, hdf5=True)


class TrainingState(keras.callbacks.Callback):
    """Records the history, keeps the best weights, stops early, and checkpoints every epoch.

    Use: `start = state.restore(model)` before `fit(..., initial_epoch=start, callbacks=[state])`,
    then `state.finish(model)` to put the best weights back, and `state.clear()` once the model is
    safely exported.

    Args:
      directory: where the state is kept; None keeps it in memory only (no resuming).
      monitor: the logged metric to maximise (e.g. "val_accuracy").
      patience: epochs without improvement before stopping; 0 never stops early.
      restore_best: `finish` loads the best epoch's weights.
    """

    def __init__(self, directory: Optional[str], monitor: str, patience: int, restore_best: bool):
        super().__init__()
        # On an object store, Keras writes into a local mirror that is uploaded after each epoch.
        self.remote = directory if directory and storage.is_remote(directory) else None
        if self.remote:
            directory = tempfile.mkdtemp(prefix="signs-checkpoints-")
        self.directory, self.monitor = directory, monitor
        self.patience, self.restore_best = patience, restore_best
        self.history: List[Dict[str, Any]] = []
        self.best_value: Optional[float] = None
        self.best_epoch = 0  # 1-based; 0 = none yet
        self.wait = 0
        self.stopped = False
        self.resumed_from: Optional[int] = None
        self._best_in_memory = None
        self._epoch_start = 0.0
        self._weights_file: Optional[str] = None  # the newest checkpoint's weights, in `directory`

    # -- resuming ------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def restore(self, model: keras.Model) -> int:
        """Loads the newest checkpoint into `model` (weights and optimizer), if there is one.

        Returns:
          The number of epochs already done: `fit`'s `initial_epoch`.
        """
        if self.remote and storage.exists(storage.join(self.remote, STATE_FILE)):
            storage.download_tree(self.remote, self.directory)
        if not self.directory or not tf.io.gfile.exists(self._path(STATE_FILE)):
            return 0
        with tf.io.gfile.GFile(self._path(STATE_FILE)) as f:
            saved = json.load(f)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self._path(saved["weights"]))
        self._weights_file = saved["weights"]
        self.history, self.wait, self.stopped = saved["history"], saved["wait"], saved["stopped"]
        self.best_value, self.best_epoch = saved["best_value"], saved["best_epoch"]
        self.resumed_from = saved["epoch"]
        _say(f"Resuming training from the checkpoint of epoch {saved['epoch']} in {self.remote or self.directory} "
             f"(best {self.monitor} so far {self.best_value} at epoch {self.best_epoch})")
        return saved["epoch"]

    # -- each epoch ----------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {"epoch": epoch + 1, "seconds": round(time.time() - self._epoch_start, 2)}
        record.update({k: float(v) for k, v in logs.items()})
        # Keras evaluates a schedule at the optimizer's step count here: the rate of the last step.
        record["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append(record)

        value = logs.get(self.monitor)
        if value is not None and (self.best_value is None or value > self.best_value):
            self.best_value, self.best_epoch, self.wait = float(value), epoch + 1, 0
            if self.directory:
                tf.io.gfile.makedirs(self.directory)
                _save_weights(self.model, self._path(BEST_FILE))
                self._publish(BEST_FILE)
            else:
                self._best_in_memory = self.model.get_weights()
        else:
            self.wait += 1
            if self.patience and self.wait >= self.patience:
                self.model.stop_training = True
                self.stopped = True
                _say(f"Stopping early after epoch {epoch + 1}: no better {self.monitor} than "
                     f"{self.best_value:.4f} (epoch {self.best_epoch}) for {self.wait} epochs")
        if self.directory:
            self._checkpoint(epoch + 1)

    def _checkpoint(self, epoch: int) -> None:
        tf.io.gfile.makedirs(self.directory)
        weights = f"epoch-{epoch}.weights.h5"
        _save_weights(self.model, self._path(weights))
        _write_json(self._path(STATE_FILE), {
            "epoch": epoch, "weights": weights, "history": self.history, "wait": self.wait,
            "stopped": self.stopped, "best_value": self.best_value, "best_epoch": self.best_epoch})
        self._publish(weights, STATE_FILE)
        previous, self._weights_file = self._weights_file, weights
        if previous and previous != weights and tf.io.gfile.exists(self._path(previous)):
            tf.io.gfile.remove(self._path(previous))
            if self.remote:
                storage.remove(storage.join(self.remote, previous))

    def _publish(self, *names: str) -> None:
        """Uploads the named files of the local mirror to the object store, in order."""
        if not self.remote:
            return
        for name in names:
            with open(self._path(name), "rb") as f:
                storage.write_bytes(storage.join(self.remote, name), f.read())

    # -- the end -------------------------------------------------------------------------------
    @property
    def exported_epoch(self) -> int:
        """The epoch whose weights `finish` leaves in the model (0: untrained)."""
        last = self.history[-1]["epoch"] if self.history else 0
        return self.best_epoch if self.restore_best and self.best_epoch else last

    def finish(self, model: keras.Model) -> None:
        """Puts the best epoch's weights back into `model` when that is not the last epoch."""
        last = self.history[-1]["epoch"] if self.history else 0
        if not self.restore_best or not self.best_epoch or self.best_epoch == last:
            return
        if self.directory:
            model.load_weights(self._path(BEST_FILE))
        elif self._best_in_memory is not None:
            model.set_weights(self._best_in_memory)
        else:
            return
        _say(f"Restored the weights of epoch {self.best_epoch} ({self.monitor} {self.best_value:.4f}); "
             f"the last epoch, {last}, had {self.history[-1].get(self.monitor, float('nan')):.4f}")

    def clear(self) -> None:
        """Deletes the checkpoints (call once the model is exported)."""
        if self.directory and tf.io.gfile.exists(self.directory):
            tf.io.gfile.rmtree(self.directory)
        if self.remote:
            storage.remove(self.remote)
