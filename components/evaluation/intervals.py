"""Confidence intervals on an accuracy: how far a figure measured on n images may be from the truth.

120 images measure an accuracy near 0.6 to about +-0.09, and two models' figures that close cannot
be told apart on them. The Review and `bench/accuracy.py` print each accuracy with its interval.
"""

from typing import Tuple

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


def describe(correct: int, n: int) -> str:
    """'0.5917 (0.50-0.68, n=120)': the accuracy and its 95 % interval."""
    low, high = wilson(correct, n)
    return f"{correct / n if n else float('nan'):.4f} ({low:.2f}-{high:.2f}, n={n})"
