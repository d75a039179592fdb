"""Tests of the expected-calibration-error TFMA metric."""

import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from components.evaluation import metrics


def _inputs(label, probs):
    return metric_types.StandardMetricInputs(labels=np.array([label]), predictions=np.array(probs),
                                             example_weights=np.array([1.0]))


def _ece(examples, num_bins=10):
    [computation] = metrics.ExpectedCalibrationError(num_bins=num_bins).computations(example_weighted=False)
    combiner = computation.combiner
    acc = combiner.create_accumulator()
    for label, probs in examples:
        acc = combiner.add_input(acc, _inputs(label, probs))
    acc = combiner.merge_accumulators([acc, combiner.create_accumulator()])
    return combiner.extract_output(acc)[computation.keys[0]]


def test_confident_and_right_is_calibrated():
    assert _ece([(0, [1.0, 0.0]), (1, [0.0, 1.0])]) == 0.0


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    # Two examples at confidence 0.8 (bin 8): one right, one wrong -> accuracy 0.5, gap 0.3.
    # One at confidence 0.6 (bin 6), right -> gap 0.4.  ECE = (2 * 0.3 + 1 * 0.4) / 3.
    examples = [(0, [0.8, 0.2]), (1, [0.8, 0.2]), (1, [0.4, 0.6])]
    assert abs(_ece(examples) - (2 * 0.3 + 0.4) / 3) < 1e-9


def test_no_examples_is_nan():
    assert np.isnan(_ece([]))
