"""SignsTrainer: TFX's Trainer with every training knob as a parameter of its own.

A value inside `custom_config` cannot be a RuntimeParameter, so each field of
`components.training.train_config.TrainConfig` that a user sets becomes an execution parameter here, and a compiled
Kubeflow pipeline can take any of them per run. The executor puts them back into the
`custom_config` that `trainer.task.run_fn` reads; `custom_config` itself carries only what the
runners derive (the number of classes, the checkpoint root).
"""

import json
from typing import Any, Dict, List, Mapping, Optional

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components.training.train_config import (DERIVED_FIELDS, TrainConfig, from_parameter, parameter_type,
                                                to_parameter)

KNOBS = {f.name: f for f in TrainConfig.knobs()}


class SignsTrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = dict(standard_component_specs.TrainerSpec.PARAMETERS,
                      **{name: ExecutionParameter(type=parameter_type(f)) for name, f in KNOBS.items()})


def knob_values(exec_properties: Mapping[str, Any]) -> Dict[str, Any]:
    """The knobs among a run's execution properties, each in its TrainConfig type."""
    return {name: from_parameter(field, exec_properties[name]) for name, field in KNOBS.items()}


class SignsTrainerExecutor(trainer_executor.GenericExecutor):
    """Puts the knob parameters into the custom_config that `run_fn` reads."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        props = {k: v for k, v in exec_properties.items() if k not in KNOBS}
        custom = json.loads(props.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}") or {}
        custom.update(knob_values(exec_properties))
        props[standard_component_specs.CUSTOM_CONFIG_KEY] = json.dumps(custom)
        super().Do(input_dict, output_dict, props)


class SignsTrainer(base_component.BaseComponent):
    """Trains with a `run_fn` (dotted path) on `examples`.

    Args:
      examples: the ExampleGen output.
      schema: the curated (or imported) schema.
      run_fn: the dotted path of the training function.
      config: the training configuration; its knobs become the component's parameters, its derived
        fields (`DERIVED_FIELDS`) go into `custom_config`.
      parameters: RuntimeParameters standing for knobs, by field name (a compiled pipeline's
        per-run settings), in place of the config's values.
    """

    SPEC_CLASS = SignsTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SignsTrainerExecutor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel, run_fn: str, config: TrainConfig,
                 parameters: Optional[Mapping[str, data_types.RuntimeParameter]] = None):
        unknown = sorted(set(parameters or {}) - set(KNOBS))
        if unknown:
            raise ValueError(f"SignsTrainer: {', '.join(unknown)}: not a training knob a run can set")
        knobs = {name: (parameters or {}).get(name, getattr(config, name)) for name in KNOBS}
        parameters = {name: to_parameter(v) for name, v in knobs.items()}
        derived = {name: getattr(config, name) for name in DERIVED_FIELDS}
        spec = SignsTrainerSpec(
            examples=examples, schema=schema, run_fn=run_fn,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(),
            custom_config=json_utils.dumps(dict(derived)),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
            **parameters)
        super().__init__(spec=spec)
