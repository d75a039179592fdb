"""Confidence intervals on an accuracy: how far a figure measured on n images may be from the truth.

120 images measure an accuracy near 0.6 to about +-0.09, and two models' figures that close cannot
be told apart on them. The Review and `bench/accuracy.py` print each accuracy with its interval.
"""

from typing import Sequence, Tuple

import numpy as np
from scipy import stats


def wilson(correct: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """The Wilson score interval of `correct` successes in `n` trials (scipy's binomtest); (0, 1) for n = 0.

    Wilson rather than the normal approximation: it stays inside [0, 1] and keeps its coverage
    near 0 and 1, where a good model's accuracies are.
    """
    if n <= 0:
        return 0.0, 1.0
    interval = stats.binomtest(int(correct), int(n)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap(scores: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
              seed: int = 0) -> Tuple[float, float]:
    """The percentile bootstrap interval of the mean of per-image `scores`, resampling the images.

    For a figure averaged over several shifts of the same images: each image's score is its share
    right over the shifts, so the images, not the predictions, are what is resampled (the shifts
    of one photo are not independent trials). (0, 1) for no images.
    """
    values = np.asarray(scores, np.float64)
    if not len(values):
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
