"""Tests of the synthetic SIGNS-format data set."""

import os

import h5py
import numpy as np

from components.data import synthetic


def test_make_split_is_deterministic_and_balanced():
    x1, y1 = synthetic.make_split(24, seed=7)
    x2, y2 = synthetic.make_split(24, seed=7)
    assert x1.dtype == np.uint8 and x1.shape == (24, 64, 64, 3)
    assert y1.dtype == np.int64 and y1.shape == (24,)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert np.bincount(y1, minlength=6).tolist() == [4] * 6
    x3, _ = synthetic.make_split(24, seed=8)
    assert not np.array_equal(x1, x3)


def test_more_fingers_show_more_skin_above_the_palm():
    x, y = synthetic.make_split(120, seed=0)
    # The top third of the picture holds the raised fingers: it differs more from the
    # background (its corner pixel) as the count goes up.
    top = x[:, :22].astype(np.float32)
    background = x[:, :1, :1].astype(np.float32)
    difference = np.abs(top - background).mean(axis=(1, 2, 3))
    means = [difference[y == k].mean() for k in range(6)]
    assert means[0] < means[2] < means[5]


def test_write_signs_h5_has_the_signs_keys_and_keeps_existing_files(tmp_path):
    out = synthetic.write_signs_h5(str(tmp_path), n_train=12, n_test=6, seed=1)
    with h5py.File(os.path.join(out, "train_signs.h5")) as f:
        assert set(f.keys()) == {"train_set_x", "train_set_y", "list_classes"}
        assert f["train_set_x"].shape == (12, 64, 64, 3) and f["train_set_x"].dtype == np.uint8
        assert f["list_classes"][:].tolist() == [0, 1, 2, 3, 4, 5]
    with h5py.File(os.path.join(out, "test_signs.h5")) as f:
        assert f["test_set_x"].shape == (6, 64, 64, 3)
        assert f["test_set_y"].dtype == np.int64
    mtime = os.stat(os.path.join(out, "train_signs.h5")).st_mtime_ns
    synthetic.write_signs_h5(str(tmp_path), n_train=12, n_test=6, seed=1)
    assert os.stat(os.path.join(out, "train_signs.h5")).st_mtime_ns == mtime  # cache stays valid
