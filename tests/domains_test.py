"""bench/domains.py and the accuracy bench's splits: people held out whole."""

import os
import zlib
import io

from bench import accuracy, domains


def test_people_are_runs_of_rising_digits():
    photos = [(f"d/{d}/IMG_{100 + d}.JPG", d) for d in range(10)]  # one person signs 0-9
    photos += [(f"d/{d}/IMG_{110 + d}.JPG", d) for d in (0, 1, 2, 4, 5)]  # the next skips 3
    photos += [("d/3/IMG_0200.JPG", 3), ("d/4/IMG_0201.JPG", 4)]  # far on: a third
    photos += [("d/1/hand.png", 1)]  # no number: alone
    groups = domains.people(list(reversed(photos)))
    assert [[os.path.basename(p) for p, _ in g] for g in groups] == [
        [f"IMG_{100 + d}.JPG" for d in range(10)], [f"IMG_{110 + d}.JPG" for d in (0, 1, 2, 4, 5)],
        ["IMG_0200.JPG", "IMG_0201.JPG"], ["hand.png"]]


def test_the_held_out_splits_are_whole_people_of_the_six_classes_and_stable():
    photos = [(f"d/{d}/IMG_{1000 + 10 * person + d}.JPG", d) for person in range(300) for d in range(10)]
    splits, people = accuracy.split_people(photos)
    assert sum(people.values()) == 300 and set(people) == {"dev", "test", "train"}
    assert 40 <= people["dev"] <= 80 and 40 <= people["test"] <= 80  # about 20 % of the people each
    assert sum(len(s) for s in splits.values()) == 300 * 6
    assert {d for s in splits.values() for _, d in s} == set(range(6))
    person = lambda path: (int(os.path.basename(path)[4:8]) - 1000) // 10  # noqa: E731
    who = {name: {person(p) for p, _ in s} for name, s in splits.items()}
    assert not who["dev"] & who["test"] and not (who["dev"] | who["test"]) & who["train"]
    assert accuracy.split_people(list(reversed(photos)))[0] == splits


def test_the_train_people_are_the_same_whichever_split_is_scored():
    """Both held-out splits score one training: the dev and test people are left out of it alike."""
    photos = [(f"d/{d}/IMG_{1000 + 10 * person + d}.JPG", d) for person in range(100) for d in range(10)]
    groups = domains.people(photos)
    buckets = {domains.split_of(g) for g in groups}
    assert buckets == {"dev", "test", "train"}
    assert all(domains.split_of(g) == "train" for g in groups
               if zlib.crc32(os.path.basename(g[0][0]).encode()) % 100 >= 40)


def test_the_bench_scores_real_held_out_photos_under_every_shift_with_intervals(shared_photos):
    """held_out_accuracies on 12 real dev photos, with a stand-in classifier that reads the label off a
    photo it has seen as it is and guesses 0 on anything changed: every measure, each inside its interval,
    and the mean of the five phone shifts the mean of their figures."""

    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from components.evaluation import shifts  # pylint: disable=import-outside-toplevel

    splits, _ = accuracy.split_people(accuracy.list_photos(shared_photos))
    dev = splits["dev"][:12]
    known = {np.asarray(Image.open(p).convert("RGB")).tobytes(): d for p, d in dev}

    def classify(images):
        out = np.zeros((len(images), 6), np.float32)
        for i, png in enumerate(images):
            out[i, known.get(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).tobytes(), 0)] = 1
        return out

    results = accuracy.held_out_accuracies(classify, dev)
    labels = np.array([d for _, d in dev])
    assert results["in-domain"]["accuracy"] == 1.0 and results["in-domain"]["n"] == 12
    for name in shifts.PHONE_NAMES:  # a changed photo is unknown: right only where the truth is 0
        assert results[f"phone proxy: {name}"]["accuracy"] == np.mean(labels == 0), name
    five = [results[f"phone proxy: {name}"]["accuracy"] for name in shifts.PHONE_SHIFTS]
    assert results["phone proxy: mean of the five"]["accuracy"] == np.mean(five)
    assert {f"pale-wall proxy: {n}" for n in shifts.NAMES} <= set(results)
    assert results["flip TTA: in-domain"]["n"] == 12 and results["drawn hands (synthetic)"]["n"] == accuracy.DRAWN_HANDS
    for name, figure in results.items():
        assert figure["low"] <= figure["accuracy"] <= figure["high"], name
