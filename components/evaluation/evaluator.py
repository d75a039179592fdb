"""BaselineAwareEvaluator: TFX's Evaluator executor with two additions.

- A baseline marked absent by LatestServedModel (the first run) is dropped, so change thresholds
  are skipped (TFX's rubber stamp) and only the value threshold decides.
- The accuracy thresholds are parameters of their own (`min_accuracy`, `min_improvement`), so a
  compiled Kubeflow pipeline can take them as runtime parameters; the executor writes them into
  the EvalConfig's SparseCategoricalAccuracy threshold.
"""

import json
from typing import Any, Dict, List, Sequence, Union

from absl import logging
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components.evaluation.baseline import ABSENT

MIN_ACCURACY_KEY, MIN_IMPROVEMENT_KEY = "min_accuracy", "min_improvement"
# ModelBlessing custom property: the served version the candidate was compared against (0: none).
COMPARED_WITH_KEY = "compared_with_version"


class BaselineAwareEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = dict(standard_component_specs.EvaluatorSpec.PARAMETERS,
                      **{MIN_ACCURACY_KEY: ExecutionParameter(type=float),
                         MIN_IMPROVEMENT_KEY: ExecutionParameter(type=float)})


def apply_thresholds(eval_config_json: str, min_accuracy: float, min_improvement: float) -> str:
    """Sets the accuracy metric's value and change thresholds in an EvalConfig (JSON).

    They apply to the overall slice only. A plain `threshold` would apply to every slice, so each
    class's accuracy (the by-label slices) would have to pass the bar as well.
    """
    config = json.loads(eval_config_json)
    for spec in config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            if metric.get("class_name") == "SparseCategoricalAccuracy":
                metric.pop("threshold", None)
                metric["per_slice_thresholds"] = [{
                    "slicing_specs": [{}],  # the overall slice
                    "threshold": {
                        "value_threshold": {"lower_bound": float(min_accuracy)},
                        "change_threshold": {"direction": "HIGHER_IS_BETTER",
                                             "absolute": float(min_improvement)}}}]
    return json.dumps(config)


class BaselineAwareEvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator executor, given the thresholds and an optional baseline."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        baseline = input_dict.get(key) or []
        if baseline and baseline[0].get_int_custom_property(ABSENT):
            logging.info("No model is serving yet: evaluating the candidate without a baseline.")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        props = dict(exec_properties)
        props[standard_component_specs.EVAL_CONFIG_KEY] = apply_thresholds(
            props[standard_component_specs.EVAL_CONFIG_KEY],
            props.pop(MIN_ACCURACY_KEY), props.pop(MIN_IMPROVEMENT_KEY))
        super().Do(input_dict, output_dict, props)
        # What the Pusher checks before it ships: the version this model was compared against.
        compared = 0 if not baseline or baseline[0].get_int_custom_property(ABSENT) else \
            baseline[0].get_int_custom_property("served_version")
        blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
        blessing.set_int_custom_property(COMPARED_WITH_KEY, compared)


class BaselineAwareEvaluator(base_beam_component.BaseBeamComponent):
    """Evaluates `model` against `baseline_model` on the eval split of `examples`."""

    SPEC_CLASS = BaselineAwareEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineAwareEvaluatorExecutor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: types.BaseChannel, eval_config,
                 min_accuracy: Union[float, data_types.RuntimeParameter],
                 min_improvement: Union[float, data_types.RuntimeParameter]):
        spec = BaselineAwareEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, eval_config=eval_config,
            min_accuracy=min_accuracy, min_improvement=min_improvement,
            example_splits=json_utils.dumps(None), fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)


def eval_config(classes: Sequence[int]) -> tfma.EvalConfig:
    """TFMA settings: candidate and baseline on the eval split, sliced overall and by label.

    The blessing needs accuracy >= `min_accuracy` and, when a model is serving, accuracy minus the
    baseline's >= `min_improvement`: BaselineAwareEvaluator writes both into the accuracy metric's
    threshold at run time, from its parameters. Loss, calibration (ECE) and the multi-class
    confusion matrix are computed for the review, and so is each class's precision and recall:
    `binarize` makes one sub-key per class id in `classes`, and `top_k: 1` counts a prediction as
    that class only when it is the top one (argmax), as the confusion matrix does; without it TFMA
    would count a class probability above 0.5, which a 6-way softmax rarely reaches. The threshold
    0 is explicit because TFMA's top-k default (-inf) counts every example as a prediction of a
    class that is never the top one (TFMA 0.47), which made such a class's recall 1.0. Slicing by
    label gives each class's accuracy (its recall) as a TFMA slice too.

    Args:
      classes: the run's labels, e.g. [0, 1, 2, 3, 4, 5]; each must be an output of the model.
    """
    class_ids = [int(c) for c in classes]
    if not class_ids or any(c < 0 for c in class_ids):
        raise ValueError(f"eval_config needs the run's class ids (labels >= 0), got {list(classes)!r}")
    model = {"label_key": "label", "signature_name": "serving_default", "preprocessing_function_names": []}
    argmax = json.dumps({"top_k": 1, "thresholds": [0.0]})
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name="candidate", **model),
                     tfma.ModelSpec(name="baseline", is_baseline=True, **model)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["label"])],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="SparseCategoricalAccuracy"),
                tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                tfma.MetricConfig(class_name="ExpectedCalibrationError", module="components.evaluation.metrics"),
                tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            ]),
            tfma.MetricsSpec(
                metrics=[tfma.MetricConfig(class_name="Precision", config=argmax),
                         tfma.MetricConfig(class_name="Recall", config=argmax)],
                binarize=tfma.BinarizationOptions(class_ids={"values": class_ids})),
        ])
