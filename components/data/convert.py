"""Makes a SIGNS h5 pair from a folder of class sub-folders, split as ExampleGen splits it.

    python -m components.data.convert FOLDER OUT_DIR [--classes 0,1,2,3,4,5] [--eval-percent 20]

writes OUT_DIR/train_signs.h5 and OUT_DIR/test_signs.h5. Each image goes to the split ExampleGen's
content hash gives it, so the pair ingests to the same examples as the folder. Streams: one image
in memory at a time.
"""

import argparse
import os
from typing import Sequence

import numpy as np

from components.data import sources


def split_of(png: bytes, eval_percent: int) -> str:
    """'train' or 'eval': the split FileBasedExampleGen gives a record whose `image` is `png`.

    The same rule as `tfx.components.example_gen.base_example_gen_executor._PartitionFn` with
    `partition_feature_name='image'` and hash buckets (100 - eval_percent, eval_percent).
    """
    from tfx.components.example_gen import base_example_gen_executor  # pylint: disable=import-outside-toplevel
    from tfx.proto import example_gen_pb2  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    example = tf.train.Example()
    example.features.feature["image"].bytes_list.value.append(png)
    config = example_gen_pb2.SplitConfig(partition_feature_name="image")
    index = base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
        example, 2, [100 - eval_percent, 100], config)
    return ("train", "eval")[index]


def folder_to_h5_pair(root: str, out_dir: str, classes: Sequence[int], eval_percent: int = 20) -> dict:
    """Writes train_signs.h5 and test_signs.h5 from `root/<label>/*`; returns {split: count}."""
    import h5py  # pylint: disable=import-outside-toplevel

    os.makedirs(out_dir, exist_ok=True)
    files = {"train": h5py.File(os.path.join(out_dir, "train_signs.h5"), "w"),
             "eval": h5py.File(os.path.join(out_dir, "test_signs.h5"), "w")}
    prefix = {"train": "train", "eval": "test"}
    size = sources.IMAGE_SIZE
    try:
        for split, f in files.items():
            f.create_dataset(f"{prefix[split]}_set_x", (0, size, size, 3), np.uint8,
                             maxshape=(None, size, size, 3), chunks=(64, size, size, 3))
            f.create_dataset(f"{prefix[split]}_set_y", (0,), np.int64, maxshape=(None,), chunks=(1024,))
            f.create_dataset("list_classes", data=np.asarray(classes, np.int64))
        for path, label in sources.list_image_folder(root, classes):
            image = sources.read_image_file(path)
            split = split_of(sources.encode_png(image), eval_percent)
            x, y = files[split][f"{prefix[split]}_set_x"], files[split][f"{prefix[split]}_set_y"]
            n = x.shape[0]
            x.resize(n + 1, axis=0)
            y.resize(n + 1, axis=0)
            x[n], y[n] = image, label
        return {split: f[f"{prefix[split]}_set_y"].shape[0] for split, f in files.items()}
    finally:
        for f in files.values():
            f.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("out_dir")
    p.add_argument("--classes", default="0,1,2,3,4,5")
    p.add_argument("--eval-percent", type=int, default=20)
    args = p.parse_args(argv)
    counts = folder_to_h5_pair(args.folder, args.out_dir, [int(c) for c in args.classes.split(",")],
                               args.eval_percent)
    print(f"wrote {args.out_dir}/train_signs.h5 ({counts['train']}) and test_signs.h5 ({counts['eval']})")


if __name__ == "__main__":
    main()
