"""The Trainer component takes every training knob as a parameter and hands run_fn the whole config."""

import json

import pytest
from tfx.orchestration import data_types
from tfx.types import channel_utils, standard_artifacts

from components.training import signs_trainer
from components.training.train_config import DERIVED_FIELDS, TrainConfig


def _channels():
    return (channel_utils.as_channel([standard_artifacts.Examples()]),
            channel_utils.as_channel([standard_artifacts.Schema()]))


def test_every_knob_is_a_parameter_and_booleans_travel_as_integers():
    examples, schema = _channels()
    config = TrainConfig(epochs=3, learning_rate=0.002, augment=False, num_classes=6, checkpoint_root="/c")
    batch_size = data_types.RuntimeParameter(name="batch_size", ptype=int, default=32)
    trainer = signs_trainer.SignsTrainer(examples=examples, schema=schema, run_fn="trainer.task.run_fn",
                                         config=config, parameters={"batch_size": batch_size})
    props = trainer.exec_properties
    assert {f.name for f in TrainConfig.knobs()} <= set(props)
    assert props["epochs"] == 3 and props["learning_rate"] == 0.002 and props["augment"] == 0
    assert isinstance(props["batch_size"], data_types.RuntimeParameter)
    assert json.loads(props["custom_config"]) == {"num_classes": 6, "checkpoint_root": "/c"}


def test_a_parameter_for_no_knob_is_named():
    examples, schema = _channels()
    derived = data_types.RuntimeParameter(name="num_classes", ptype=int, default=6)
    with pytest.raises(ValueError, match="num_classes: not a training knob a run can set"):
        signs_trainer.SignsTrainer(examples=examples, schema=schema, run_fn="m.f", config=TrainConfig(),
                                   parameters={"num_classes": derived})


def test_the_executor_hands_run_fn_the_config_the_parameters_say(monkeypatch):
    """As a Kubeflow task receives them: numbers as floats, booleans as 0/1."""
    seen = {}
    monkeypatch.setattr(signs_trainer.trainer_executor.GenericExecutor, "Do",
                        lambda self, inputs, outputs, props: seen.update(props))
    wanted = TrainConfig(num_classes=10, checkpoint_root="gs://b/c", epochs=7, learning_rate=0.01,
                         augment=False, precision="float32")
    props = {f.name: float(int(v)) if isinstance(v, bool) else (float(v) if isinstance(v, int) else v)
             for f in TrainConfig.knobs() for v in [getattr(wanted, f.name)]}
    props["custom_config"] = json.dumps({name: getattr(wanted, name) for name in DERIVED_FIELDS})
    props["run_fn"] = "trainer.task.run_fn"
    signs_trainer.SignsTrainerExecutor().Do({}, {}, props)
    assert TrainConfig.from_dict(json.loads(seen["custom_config"])) == wanted
    assert not set(seen) & {f.name for f in TrainConfig.knobs()}  # only run_fn's custom_config carries them
