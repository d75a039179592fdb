"""The accuracy bar is written into the EvalConfig for the overall slice only."""

import json

from google.protobuf import json_format
import tensorflow_model_analysis as tfma

from components.evaluation.evaluator import apply_thresholds
from components.evaluation.evaluator import eval_config


def test_thresholds_apply_to_the_overall_slice_only():
    config_json = json_format.MessageToJson(eval_config(), preserving_proto_field_name=True)  # as TFX writes it
    applied = json_format.Parse(apply_thresholds(config_json, 0.9, 0.01), tfma.EvalConfig())
    [accuracy] = [m for s in applied.metrics_specs for m in s.metrics
                  if m.class_name == "SparseCategoricalAccuracy"]
    assert not accuracy.HasField("threshold")
    [per_slice] = accuracy.per_slice_thresholds
    assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.9
    assert per_slice.threshold.change_threshold.absolute.value == 0.01
    assert json.loads(apply_thresholds(config_json, 0.5, 0.0))  # valid JSON again
