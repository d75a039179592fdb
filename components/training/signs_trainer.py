"""SignsTrainer: TFX's Trainer with `epochs` as a parameter of its own, so a compiled Kubeflow
pipeline can take it as a runtime parameter (a value inside `custom_config` cannot be one)."""

import json
from typing import Any, Dict, List, Optional, Union

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

EPOCHS_KEY = "epochs"


class SignsTrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = dict(standard_component_specs.TrainerSpec.PARAMETERS,
                      **{EPOCHS_KEY: ExecutionParameter(type=int)})


class Executor(trainer_executor.GenericExecutor):
    """Puts the `epochs` parameter into the custom_config that `run_fn` reads."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        props = dict(exec_properties)
        custom = json.loads(props.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}") or {}
        custom["epochs"] = int(props.pop(EPOCHS_KEY))
        props[standard_component_specs.CUSTOM_CONFIG_KEY] = json.dumps(custom)
        super().Do(input_dict, output_dict, props)


class SignsTrainer(base_component.BaseComponent):
    """Trains with a `run_fn` (dotted path) on `examples`; `epochs` may be a RuntimeParameter."""

    SPEC_CLASS = SignsTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel, run_fn: str,
                 epochs: Union[int, data_types.RuntimeParameter],
                 custom_config: Optional[Dict[str, Any]] = None):
        spec = SignsTrainerSpec(
            examples=examples, schema=schema, run_fn=run_fn,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(),
            custom_config=json_utils.dumps(custom_config or {}), epochs=epochs,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        super().__init__(spec=spec)
