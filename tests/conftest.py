"""Shared fixtures: tiny real data sets, made once per test session."""

import os

import pytest

from components.data import synthetic
from tests.helpers import SHARED_PHOTOS


@pytest.fixture(scope="session")
def shared_photos():
    """The shared sign-language-digits photos, or a skip saying why they are missing."""
    if not os.path.isdir(SHARED_PHOTOS):
        pytest.skip(f"real photos not found at {os.path.abspath(SHARED_PHOTOS)} (../shared is absent)")
    return os.path.abspath(SHARED_PHOTOS)


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory):
    """A SIGNS-format h5 pair of 36 train and 12 test images."""
    return synthetic.write_signs_h5(str(tmp_path_factory.mktemp("tiny_h5")), n_train=36, n_test=12, seed=5)
