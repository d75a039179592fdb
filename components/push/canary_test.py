"""The canary request read from where the Trainer wrote it: a disk or an object store."""

import numpy as np
import pytest

from testsupport import fixtures
from components.data import storage
from components.push import canary


def _answers(images):
    return np.tile(np.eye(6)[1], (len(images), 1))


@pytest.mark.parametrize("where", ["disk", "store"])
def test_the_canary_is_read_from_any_store_and_a_missing_one_stops_the_push(where, tmp_path):
    """A model on an object store once skipped the comparison silently: its canary request is read
    through the storage layer, the same as from a disk, and its absence is named."""
    root = "minio://mlpipeline" if where == "store" else str(tmp_path)
    with fixtures.stand_in_store("minio://mlpipeline"):
        model_dir = storage.join(root, tmp_path.name, "model")
        path = canary.write_expected(model_dir, _answers)
        assert path == storage.join(model_dir, canary.CANARY_FILE)
        read = canary.read_canary(path)
        assert np.array_equal(read["probabilities"], _answers(canary.canary_images())) and read["atol"] == 1e-3
        assert len(read["png_b64"]) == len(canary.canary_images())
        storage.remove(path)
        with pytest.raises(canary.CanaryError, match=r"missing \(the Trainer writes it beside every model it exports\)"):
            canary.read_canary(path)
