"""Held-out people: the Sign Language Digits photos grouped back into the people who took them.

The photos were taken by 218 people, each signing 0 to 9 in turn, so a person's photos carry
consecutive numbers (`IMG_1118.JPG` is 0, `IMG_1119.JPG` 1, ...). `people` groups them back into
those sessions, and `split_of` holds whole people out: a held-out photo's hand, skin and room
are then never seen in training (the shifts they are scored under live in
`components/evaluation/shifts.py`). A stable hash puts each person in one of three splits:

- `dev` (20 % of the people): where the training settings are chosen (and were, in every earlier
  measurement of bench/README.md, whose "test split" these people were);
- `test` (another 20 %): nothing is chosen on it; it confirms what `dev` chose;
- `train` (the other 60 %): what the pipeline sees, for training and its own validation split.
"""

import os
import re
import zlib
from typing import List, Sequence, Tuple

PHOTO_NUMBER = re.compile(r"(\d+)\.[A-Za-z]+$")


def people(photos: Sequence[Tuple[str, int]]) -> List[List[Tuple[str, int]]]:
    """Groups (path, digit) photos into people: runs of consecutive numbers whose digits rise.

    A new person starts where the digit does not rise from the photo before, or the numbers jump
    by more than 3 (a skipped sign or two). A name without a number is a person of its own.
    """
    numbered, alone = [], []
    for path, digit in photos:
        match = PHOTO_NUMBER.search(os.path.basename(path))
        (numbered if match else alone).append((int(match.group(1)) if match else 0, path, digit))
    groups: List[List[Tuple[str, int]]] = []
    last = None
    for number, path, digit in sorted(numbered):
        if last is None or digit <= last[1] or number - last[0] > 3:
            groups.append([])
        groups[-1].append((path, digit))
        last = (number, digit)
    return groups + [[(path, digit)] for _, path, digit in alone]


SPLITS = (("dev", 20), ("test", 40), ("train", 100))  # each split and the end of its share of 100


def split_of(group: Sequence[Tuple[str, int]]) -> str:
    """The split of a person: a stable hash of their first photo's name, into `SPLITS`' shares of 100."""
    bucket = zlib.crc32(os.path.basename(group[0][0]).encode()) % 100
    return next(name for name, end in SPLITS if bucket < end)
