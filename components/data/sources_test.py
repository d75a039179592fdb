"""Tests of the SIGNS readers: every kind of bad input gets one line naming the file."""

import os

import h5py
import numpy as np
import pytest
from PIL import Image

from components.data import sources
from components.data.sources import SignsDataError
from testsupport import fixtures
from components.data import storage

CLASSES = (0, 1, 2, 3, 4, 5)


def _write_h5(path, x, y, prefix="train"):
    with h5py.File(path, "w") as f:
        f.create_dataset(f"{prefix}_set_x", data=x)
        f.create_dataset(f"{prefix}_set_y", data=y)
    return str(path)


def _images(n):
    return np.random.default_rng(0).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)


def test_good_h5_reads_in_chunks(tmp_path):
    path = _write_h5(tmp_path / "train_signs.h5", _images(5), np.arange(5) % 6)
    assert sources.check_h5(path, CLASSES) == 5
    records = list(sources.read_h5_chunk(path, 2, 5))
    assert [r[1] for r in records] == [2, 3, 4]
    assert records[0][2] == "train_signs.h5[2]"
    assert records[0][0].shape == (64, 64, 3)


@pytest.mark.parametrize("x, y, expected", [
    (_images(4), np.arange(3), "has 4 images but 'train_set_y' has 3 labels"),
    (_images(4).astype(np.float32), np.arange(4), "must be uint8 (N, H, W, 3)"),
    (_images(4)[..., :1], np.arange(4), "must be uint8 (N, H, W, 3)"),
    (_images(3), np.array([0, 9, 1]), "[1]: label 9 is not one of the classes"),
    (_images(0), np.arange(0), "holds no images"),
])
def test_bad_h5_names_the_file_and_problem(tmp_path, x, y, expected):
    path = _write_h5(tmp_path / "train_signs.h5", x, y)
    with pytest.raises(SignsDataError) as e:
        sources.check_h5(path, CLASSES)
    assert str(e.value).startswith(path)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_h5_without_the_signs_keys(tmp_path):
    path = str(tmp_path / "other.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=_images(2))
    with pytest.raises(SignsDataError, match=r"other\.h5: expected one '<split>_set_x'.*found keys \['images'\]"):
        sources.check_h5(path, CLASSES)


def test_not_an_h5_file(tmp_path):
    path = tmp_path / "train_signs.h5"
    path.write_text("hello")
    with pytest.raises(SignsDataError, match="not a readable HDF5 file"):
        sources.check_h5(str(path), CLASSES)


def test_images_of_any_mode_and_size_become_64x64_rgb(tmp_path):
    for mode, size in (("L", (100, 80)), ("RGBA", (30, 30)), ("P", (128, 128)), ("RGB", (64, 64))):
        path = str(tmp_path / f"img_{mode}.png")
        Image.new(mode, size, color=1).save(path)
        image = sources.read_image_file(path)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    wide = Image.new("RGB", (120, 60), "white")
    wide.paste((255, 0, 0), (0, 0, 60, 60))  # red on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    path = str(tmp_path / "rotated.jpg")
    wide.save(path, exif=exif.tobytes(), quality=95)
    image = sources.read_image_file(path).astype(int)
    # Upright, the red half is on top.
    assert image[:20, :, 0].mean() > 200 and image[:20, :, 1].mean() < 60
    assert image[-20:, :, 1].mean() > 200


@pytest.mark.parametrize("content, expected", [
    (b"", "empty file (0 bytes)"),
    (b"this is not an image", "not a decodable image"),
    ("truncated", "not a decodable image"),
])
def test_bad_image_files(tmp_path, content, expected):
    path = str(tmp_path / "bad.jpg")
    if content == "truncated":
        Image.new("RGB", (100, 100), "red").save(path, quality=90)
        data = open(path, "rb").read()
        content = data[: len(data) // 2]
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(SignsDataError) as e:
        sources.read_image_file(path)
    assert str(e.value).startswith(f"{path}: {expected}")


def test_unreadable_image(tmp_path):
    path = str(tmp_path / "missing.png")
    with pytest.raises(SignsDataError, match="missing.png: unreadable"):
        sources.read_image_file(path)


def test_image_folder_listing(tmp_path):
    for label in range(6):
        os.makedirs(tmp_path / str(label))
        Image.new("RGB", (10, 10)).save(tmp_path / str(label) / "a.png")
    (tmp_path / "0" / "notes.txt").write_text("ignored: not an image extension")
    files = sources.list_image_folder(str(tmp_path), CLASSES)
    assert [label for _, label in files] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(SignsDataError, match="missing class folder for label 7"):
        sources.list_image_folder(str(tmp_path), (0, 7))
    os.remove(tmp_path / "3" / "a.png")
    with pytest.raises(SignsDataError, match=r"3: no images .* for label 3"):
        sources.list_image_folder(str(tmp_path), CLASSES)


def test_sources_on_an_object_store(tmp_path):
    """A data root on S3 (MinIO, AWS): h5 files, class folders and their errors, as on a disk."""
    with fixtures.stand_in_store("s3://signs-data"):
        root = "s3://signs-data/root"
        os.makedirs(tmp_path / "h5")
        storage.upload_tree(os.path.dirname(_write_h5(tmp_path / "h5" / "train_signs.h5", _images(3), np.arange(3))),
                            f"{root}/h5")
        assert sources.check_h5(f"{root}/h5/train_signs.h5", CLASSES) == 3
        assert [r[2] for r in sources.read_h5_chunk(f"{root}/h5/train_signs.h5", 1, 3)] == \
            ["train_signs.h5[1]", "train_signs.h5[2]"]
        for label in (0, 1):
            Image.fromarray(_images(1)[0]).save(tmp_path / f"{label}.png")
            storage.write_bytes(f"{root}/folder/{label}/a.png", (tmp_path / f"{label}.png").read_bytes())
        found = sources.list_image_folder(f"{root}/folder", (0, 1))
        assert found == [(f"{root}/folder/0/a.png", 0), (f"{root}/folder/1/a.png", 1)]
        assert sources.read_image_file(found[0][0]).shape == (64, 64, 3)
        with pytest.raises(SignsDataError, match=f"^{root}/folder/2: missing class folder for label 2$"):
            sources.list_image_folder(f"{root}/folder", (0, 1, 2))
        storage.write_bytes(f"{root}/folder/1/b.png", b"not a png")
        with pytest.raises(SignsDataError, match=f"^{root}/folder/1/b.png: not a decodable image"):
            sources.read_image_file(f"{root}/folder/1/b.png")


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # a few KB on disk, 144 megapixels declared
    with pytest.raises(SignsDataError, match=rf"^{path}: declares 12000x12000 pixels, more than the limit of 40000000 "):
        sources.read_image_file(str(path))
    Image.new("RGB", (300, 200)).save(tmp_path / "ok.png")
    with pytest.raises(SignsDataError, match="declares 300x200 pixels, more than the limit of 1000"):
        sources.read_image_file(str(tmp_path / "ok.png"), max_pixels=1000)
    assert sources.read_image_file(str(tmp_path / "ok.png")).shape == (64, 64, 3)


# -- Sources read only what they name --------------------------------------------------------------

def test_h5_external_storage_and_links_are_not_followed(tmp_path):
    """`train_set_x` stored in /etc/passwd trained on that file's bytes; on Kubeflow, the pod's token."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 400)
    external = tmp_path / "external.h5"
    with h5py.File(external, "w") as f:
        f.create_dataset("train_set_x", shape=(1, 64, 64, 3), dtype=np.uint8, external=[(str(secret), 0, 12288)])
        f.create_dataset("train_set_y", data=np.zeros(1, np.int64))
    with h5py.File(external, "r") as f:
        assert f["train_set_x"][0, 0, 0].tobytes() == b"roo"  # h5py itself follows it
    with pytest.raises(SignsDataError, match=r"external\.h5: 'train_set_x' keeps its data in other files "
                                             r"\(external storage\); only datasets stored in the file are read"):
        sources.check_h5(str(external), CLASSES)

    elsewhere = _write_h5(tmp_path / "elsewhere.h5", _images(2), np.arange(2))
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f["train_set_x"] = h5py.ExternalLink(elsewhere, "train_set_x")
        f.create_dataset("train_set_y", data=np.arange(2))
    with pytest.raises(SignsDataError, match=r"linked\.h5: 'train_set_x' is a ExternalLink to another place"):
        list(sources.read_h5_chunk(str(linked), 0, 2))

    grouped = tmp_path / "grouped.h5"
    with h5py.File(grouped, "w") as f:
        f.create_group("train_set_x")
        f.create_dataset("train_set_y", data=np.arange(2))
    with pytest.raises(SignsDataError, match=r"grouped\.h5: 'train_set_x' is a group, not a dataset"):
        sources.check_h5(str(grouped), CLASSES)


def test_h5_images_are_held_to_the_pixel_and_size_limits(tmp_path):
    """12 images of 8000x8000 in a 2 KB compressed file decoded to 3.35 GB; 10^8 declared records ran on for minutes."""
    big = tmp_path / "big.h5"
    with h5py.File(big, "w") as f:
        f.create_dataset("train_set_x", shape=(12, 8000, 8000, 3), dtype=np.uint8, chunks=(1, 500, 500, 3),
                         compression="gzip")
        f.create_dataset("train_set_y", data=np.zeros(12, np.int64))
    assert os.path.getsize(big) < 100_000
    with pytest.raises(SignsDataError, match=r"big\.h5: 'train_set_x' holds 8000x8000 images, more pixels than the "
                                             r"limit of 40000000 \(--max-image-pixels\); not read"):
        sources.check_h5(str(big), CLASSES)
    many = tmp_path / "many.h5"
    with h5py.File(many, "w") as f:
        f.create_dataset("train_set_x", shape=(10 ** 8, 64, 64, 3), dtype=np.uint8, chunks=(1, 64, 64, 3))
        f.create_dataset("train_set_y", shape=(10 ** 8,), dtype=np.int64, chunks=(1000,))
    with pytest.raises(SignsDataError, match=r"many\.h5: 'train_set_x' \(100000000, 64, 64, 3\) would decode to "
                                             r"1228800000000 bytes, more than the limit of"):
        sources.check_h5(str(many), CLASSES)


@pytest.mark.parametrize("special", ["fifo", "dev-zero"])
def test_a_special_file_in_a_source_is_refused_without_reading_it(tmp_path, special):
    """A FIFO named f.jpg hung ExampleGen; a .jpg linked to /dev/zero grew to 5 GB in 24 s."""
    path = tmp_path / "f.jpg"
    if special == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    kind = "fifo" if special == "fifo" else "device"
    with pytest.raises(SignsDataError, match=f"f.jpg: a {kind}, not a regular file; not read"):
        sources.read_image_file(str(path))
    h5 = tmp_path / "train_signs.h5"
    os.symlink("/dev/zero", h5)
    with pytest.raises(SignsDataError, match="train_signs.h5: a device, not a regular file; not read"):
        sources.check_h5(str(h5), CLASSES)


def test_an_image_file_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_IMAGE_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(sources.encode_png(_images(1)[0]))
    with pytest.raises(SignsDataError, match=r"big\.png: \d+ bytes, more than the limit of 1000 for one file; not read"):
        sources.read_image_file(str(path))


def test_a_source_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_SOURCE_BYTES", 2000)
    for label in CLASSES:
        os.makedirs(tmp_path / "photos" / str(label))
        (tmp_path / "photos" / str(label) / "a.png").write_bytes(sources.encode_png(_images(1)[0]))
    with pytest.raises(SignsDataError, match=r"photos: \d+ bytes of files, more than the limit of 2000 for one source"):
        sources.list_image_folder(str(tmp_path / "photos"), CLASSES)


def test_a_tfrecord_image_is_held_to_the_configured_pixel_limit(tmp_path):
    """TFRecord sources used the default limit whatever --max-image-pixels said."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sources.encode_png(_images(1)[0])])),
               "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
    raw = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    assert sources.parse_signs_example(raw, CLASSES, "r[0]", "r[0]")[1] == 1
    with pytest.raises(SignsDataError, match=r"r\[0\]: declares 64x64 pixels, more than the limit of 1000"):
        sources.parse_signs_example(raw, CLASSES, "r[0]", "r[0]", max_pixels=1000)


def test_an_h5_declaring_more_than_it_stores_is_refused_before_reading(tmp_path):
    """A 4 KB h5 declaring 256 images of 6000x6000 passed the checks, and the first chunk needed 27.6 GB;
    1.6 KB declaring 10^8 records of 1x1 took 50 s to check and would have fed ExampleGen 10^8 records."""
    import h5py  # pylint: disable=import-outside-toplevel
    big = tmp_path / "big.h5"
    with h5py.File(big, "w") as f:
        f.create_dataset("train_set_x", shape=(256, 6000, 6000, 3), dtype=np.uint8, chunks=(1, 600, 600, 3))
        f.create_dataset("train_set_y", data=np.zeros(256, np.int64))
    with pytest.raises(SignsDataError, match=r"big\.h5: 'train_set_x' declares \(256, 6000, 6000, 3\) but stores 0 of "
                                             r"its 25600 chunks; not read"):
        sources.check_h5(str(big), CLASSES, max_pixels=40_000_000)
    many = tmp_path / "many.h5"
    with h5py.File(many, "w") as f:
        f.create_dataset("train_set_x", shape=(10 ** 8, 1, 1, 3), dtype=np.uint8)  # contiguous, never written
        f.create_dataset("train_set_y", shape=(10 ** 8,), dtype=np.int64)
    assert os.path.getsize(many) < 10_000
    with pytest.raises(SignsDataError, match=r"many\.h5: 'train_set_x' declares \(100000000, 1, 1, 3\) \(300000000 "
                                             r"bytes\) but stores 0 bytes; not read"):
        sources.check_h5(str(many), CLASSES)


def test_large_h5_images_are_read_a_few_at_a_time(tmp_path):
    import h5py  # pylint: disable=import-outside-toplevel
    path = tmp_path / "large.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train_set_x", data=np.zeros((3, 2000, 2000, 3), np.uint8))
        f.create_dataset("train_set_y", data=np.zeros(3, np.int64))
    assert sources.check_h5_chunks(str(path), CLASSES) == (3, sources.H5_CHUNK_BYTES // (2000 * 2000 * 3))
    small = tmp_path / "small.h5"
    _write_h5(small, np.zeros((3, 64, 64, 3), np.uint8), np.zeros(3, np.int64))
    assert sources.check_h5_chunks(str(small), CLASSES) == (3, sources.H5_CHUNK)
