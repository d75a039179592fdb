"""Evaluator executor that takes LatestServedModel's output as the baseline, or none when absent."""

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.evaluator import component as evaluator_component
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components.baseline import ABSENT


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator, minus a baseline marked absent (first run): then change thresholds are
    skipped (TFX's rubber stamp) and only the value thresholds decide."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        baseline = input_dict.get(key) or []
        if baseline and baseline[0].get_int_custom_property(ABSENT):
            logging.info("No model is serving yet: evaluating the candidate without a baseline.")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)


class BaselineAwareEvaluator(evaluator_component.Evaluator):
    """TFX's Evaluator component with the executor above (Evaluator takes no custom_executor_spec)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
