"""Finds out what `--data` points at, or makes the synthetic default set."""

import os
from typing import Optional, Tuple

from components import sources, synthetic
from pipeline.configs import H5_PAIR, IMAGE_FOLDER


def resolve(data: Optional[str], synthetic_dir: str) -> Tuple[str, str, bool]:
    """Returns (data_root, source_kind, is_synthetic) for a `--data` value.

    Args:
      data: a directory with train_signs.h5 and test_signs.h5, or a folder of class sub-folders;
        None for the synthetic default, generated into `synthetic_dir` on first use.
      synthetic_dir: where the synthetic set lives.

    Raises:
      SignsDataError: `data` is missing or is neither layout.
    """
    if data is None:
        return synthetic.write_signs_h5(synthetic_dir), H5_PAIR, True
    if not os.path.exists(data):
        raise sources.SignsDataError(f"{data}: no such file or directory")
    if not os.path.isdir(data):
        raise sources.SignsDataError(
            f"{data}: expected a directory (with train_signs.h5 and test_signs.h5, or class sub-folders)")
    names = set(os.listdir(data))
    if {"train_signs.h5", "test_signs.h5"} <= names:
        return data, H5_PAIR, False
    if any(os.path.isdir(os.path.join(data, n)) for n in names):
        return data, IMAGE_FOLDER, False
    raise sources.SignsDataError(
        f"{data}: holds neither train_signs.h5 + test_signs.h5 nor class sub-folders (<label>/*.jpg)")
