"""bench/domains.py and the accuracy bench's splits: people held out whole."""

import os

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


def test_the_test_split_is_whole_people_of_the_six_classes_and_stable():
    photos = [(f"d/{d}/IMG_{1000 + 10 * person + d}.JPG", d) for person in range(200) for d in range(10)]
    train, test, (n_train, n_test) = accuracy.split_people(photos, 20)
    assert n_train + n_test == 200 and 25 <= n_test <= 55  # about 20 % of the people
    assert len(train) + len(test) == 200 * 6 and {d for _, d in train + test} == set(range(6))
    person = lambda path: (int(os.path.basename(path)[4:8]) - 1000) // 10  # noqa: E731
    assert not {person(p) for p, _ in train} & {person(p) for p, _ in test}
    assert accuracy.split_people(list(reversed(photos)), 20)[1] == test
