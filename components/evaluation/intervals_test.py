"""components/evaluation/intervals.py: Wilson intervals on an accuracy."""

import pytest

from components.evaluation import intervals


@pytest.mark.parametrize("correct, n, low, high", [
    (71, 120, 0.502, 0.675),   # the 0.59 on 120 photos: about +-0.09
    (120, 120, 0.969, 1.0),    # all right: the interval still admits errors
    (0, 10, 0.0, 0.278),
    (226, 232, 0.945, 0.988),
])
def test_wilson_intervals_match_the_formula(correct, n, low, high):
    got = intervals.wilson(correct, n)
    assert got == pytest.approx((low, high), abs=0.001)
    p, z = correct / n, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    assert got == pytest.approx((centre - half, centre + half), abs=1e-6)


def test_no_images_say_nothing():
    assert intervals.wilson(0, 0) == (0.0, 1.0)


def test_the_bootstrap_interval_resamples_images_and_holds_the_mean():
    import numpy as np  # pylint: disable=import-outside-toplevel
    scores = np.repeat([0.0, 0.2, 0.6, 1.0], 58)  # 232 photos, each right on 0-5 of five shifts
    low, high = intervals.bootstrap(scores)
    assert low < scores.mean() < high and 0.05 < high - low < 0.12
    assert intervals.bootstrap(scores) == (low, high)  # seeded
    assert intervals.bootstrap(np.ones(10)) == (1.0, 1.0) and intervals.bootstrap([]) == (0.0, 1.0)
    # Wider than pretending the 5 x 232 predictions were independent trials.
    wide = intervals.wilson(int(scores.sum() * 5), 5 * 232)
    assert high - low > wide[1] - wide[0]
