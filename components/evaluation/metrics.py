"""A TFMA metric TFMA 0.47 lacks: expected calibration error (ECE) of the top-1 prediction."""

from typing import Any, Dict, Iterable, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

ECE_NAME = "expected_calibration_error"


class ExpectedCalibrationError(metric_types.Metric):
    """ECE: the example-weighted mean gap between top-1 confidence and accuracy, over equal-width
    confidence bins (Guo et al., 2017). 0 is perfectly calibrated; lower is better.

    Use in an EvalConfig as MetricConfig(class_name='ExpectedCalibrationError',
    module='components.evaluation.metrics', config='{"num_bins": 10}').
    """

    def __init__(self, name: str = ECE_NAME, num_bins: int = 10):
        super().__init__(_ece_computations, name=name, num_bins=num_bins)


def _ece_computations(name: str = ECE_NAME, num_bins: int = 10,
                      eval_config: Optional[config_pb2.EvalConfig] = None, model_names=None,
                      output_names=None, sub_keys=None, example_weighted: bool = False,
                      **_) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted)
            computations.append(metric_types.MetricComputation(
                keys=[key], preprocessors=None,
                combiner=_EceCombiner(key, eval_config, example_weighted, num_bins)))
    return computations


class _EceCombiner(beam.CombineFn):
    """Accumulates (weight, confidence sum, correct sum) per confidence bin."""

    def __init__(self, key, eval_config, example_weighted, num_bins):
        self._key, self._eval_config = key, eval_config
        self._example_weighted, self._num_bins = example_weighted, num_bins

    def create_accumulator(self) -> np.ndarray:
        return np.zeros((self._num_bins, 3))

    def add_input(self, accumulator: np.ndarray, element: Any) -> np.ndarray:
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, example_weighted=self._example_weighted,
                flatten=False, require_single_example_weight=True):
            prediction = np.asarray(prediction).reshape(-1)
            label = np.asarray(label).reshape(-1)
            actual = int(np.argmax(label)) if label.size > 1 else int(label[0])
            predicted = int(np.argmax(prediction))
            confidence = float(prediction[predicted])
            b = min(int(confidence * self._num_bins), self._num_bins - 1)
            w = float(weight)
            accumulator[b] += (w, w * confidence, w * float(predicted == actual))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        return np.sum(list(accumulators), axis=0)

    def extract_output(self, accumulator: np.ndarray) -> Dict[metric_types.MetricKey, float]:
        total = accumulator[:, 0].sum()
        if total == 0:
            return {self._key: float("nan")}
        gaps = np.abs(accumulator[:, 1] - accumulator[:, 2])  # |sum conf - sum correct| per bin
        return {self._key: float(gaps.sum() / total)}


metric_types.register_metric(ExpectedCalibrationError)
