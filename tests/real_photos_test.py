"""The 1237 six-class real photos ingest the same as a folder and as a SIGNS h5 pair made from it."""

import collections

import pytest

from components.data import convert, sources
from testsupport.fixtures import run_example_gen

pytestmark = pytest.mark.slow  # Beam over 1237 photos, twice: ~45 s


def _by_split(out):
    """{split: Counter of (PNG bytes, label)}: the examples, without their source ids."""
    return {split: collections.Counter((png, label) for png, label, _ in records)
            for split, records in out.items()}


def test_folder_and_h5_pair_give_the_same_examples(shared_photos, tmp_path):
    folder = run_example_gen(str(tmp_path / "from_folder"), shared_photos, [("all", "*/*")],
                             sources.IMAGE_FOLDER, eval_percent=20)
    counts = convert.folder_to_h5_pair(shared_photos, str(tmp_path / "pair"), range(6), eval_percent=20)
    pair = run_example_gen(str(tmp_path / "from_pair"), str(tmp_path / "pair"),
                           [("train", "train_signs.h5"), ("eval", "test_signs.h5")], sources.H5_PAIR)

    assert sum(len(r) for r in folder.values()) == 1237
    assert {s: len(r) for s, r in pair.items()} == counts
    assert _by_split(folder) == _by_split(pair)
    assert all(source.upper().endswith(".JPG") for _, _, source in folder["train"])
    assert pair["eval"][0][2].startswith("test_signs.h5[")
