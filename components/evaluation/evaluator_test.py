"""The EvalConfig: the accuracy bar on the overall slice only; per-class precision and recall by TFMA."""

import json
import math

from google.protobuf import json_format
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from components.evaluation.evaluator import apply_thresholds, eval_config


def test_thresholds_apply_to_the_overall_slice_only():
    config_json = json_format.MessageToJson(eval_config([0, 1, 2, 3, 4, 5]), preserving_proto_field_name=True)  # as TFX writes it
    applied = json_format.Parse(apply_thresholds(config_json, 0.9, 0.01), tfma.EvalConfig())
    [accuracy] = [m for s in applied.metrics_specs for m in s.metrics
                  if m.class_name == "SparseCategoricalAccuracy"]
    assert not accuracy.HasField("threshold")
    [per_slice] = accuracy.per_slice_thresholds
    assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.9
    assert per_slice.threshold.change_threshold.absolute.value == 0.01
    assert json.loads(apply_thresholds(config_json, 0.5, 0.0))  # valid JSON again


def test_per_class_precision_and_recall_count_the_top_prediction():
    """TFMA computes them from the config's binarized metrics: argmax, and 0 recall for a class never predicted.

    Class 0's second example is right at probability 0.4 (a 0.5 threshold would miss it); class 2
    is never the top prediction (TFMA's top-k default threshold would give it recall 1.0).
    """
    config = eval_config([0, 1, 2])
    per_class = [spec for spec in config.metrics_specs if spec.HasField("binarize")]
    assert list(per_class[0].binarize.class_ids.values) == [0, 1, 2]
    raw = tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="label", prediction_key="probabilities")],
                          slicing_specs=[tfma.SlicingSpec()], metrics_specs=per_class)
    frame = pd.DataFrame({"label": [0, 0, 1, 1, 2, 2],
                          "probabilities": [[.6, .3, .1], [.4, .35, .25], [.2, .7, .1], [.5, .3, .2],
                                            [.1, .5, .4], [.45, .1, .44]]})
    result = tfma.analyze_raw_data(frame, raw)
    found = {c: result.get_metrics_for_slice(class_id=c, top_k=1) for c in (0, 1, 2)}
    assert {c: m["recall"]["doubleValue"] for c, m in found.items()} == {0: 1.0, 1: 0.5, 2: 0.0}
    assert found[0]["precision"]["doubleValue"] == 0.5 and found[1]["precision"]["doubleValue"] == 0.5
    assert math.isnan(float(found[2]["precision"]["doubleValue"]))  # never predicted: undefined


def test_eval_config_wants_class_ids():
    with pytest.raises(ValueError, match=r"got \[\]"):
        eval_config([])
