"""create_pipeline: the components, how they connect, and where the settings land."""

import json

import pytest
from tfx.orchestration import data_types

from components.training.train_config import TrainConfig
from pipeline.definition import Placement, create_pipeline
from pipeline.data_source import H5_PAIR_SPLITS
from pipeline.options import PipelineConfig


def _pipeline(train=TrainConfig(epochs=4), parameters=None, **where):
    settings = PipelineConfig(classes=(0, 1, 2), train=train, min_accuracy=0.8)
    placement = dict(pipeline_root="/r", data_root="/d", input_splits=H5_PAIR_SPLITS, source_kind="h5_pair",
                     serving_dir="/r/serving_model")
    placement.update(where)
    return create_pipeline(settings, Placement(**placement), parameters)


def _by_id(pipeline):
    return {c.id: c for c in pipeline.components}


def test_the_components_and_the_gate():
    components = _by_id(_pipeline())
    assert sorted(components) == sorted(["ExampleGen", "StatisticsGen", "SchemaGen", "CurateSchema", "ExampleValidator",
                                "DataChecks", "Trainer", "LatestServedModel", "Evaluator", "Pusher", "Review"])
    assert "DataChecks" in {n.id for n in components["Trainer"].upstream_nodes}  # trains only past the gate
    trainer = components["Trainer"].exec_properties
    assert trainer["epochs"] == 4 and json.loads(trainer["custom_config"]) == {"num_classes": 3,
                                                                               "checkpoint_root": "/r/checkpoints"}
    assert "/r/serving_model" in json.dumps(components["Pusher"].exec_properties["push_destination"])


def test_a_curated_schema_replaces_the_inferred_one():
    components = _by_id(_pipeline(schema_path="/s/schema.pbtxt"))
    assert "SchemaImporter" in components and not {"SchemaGen", "CurateSchema"} & set(components)


def test_kubeflow_parameters_stand_for_training_knobs():
    epochs = data_types.RuntimeParameter(name="epochs", ptype=int, default=4)
    trainer = _by_id(_pipeline(parameters={"epochs": epochs}))["Trainer"].exec_properties
    assert trainer["epochs"] is epochs and trainer["batch_size"] == 32
    with pytest.raises(ValueError, match="checkpoint_root: not a training knob"):
        _pipeline(parameters={"checkpoint_root": data_types.RuntimeParameter(name="c", ptype=str, default="")})


def test_a_changed_training_flag_changes_the_trainers_inputs():
    """What the summary of a run that was not blessed advises (more --epochs, a longer
    --time-budget-minutes) reaches the Trainer's execution properties, which key TFX's cache: the
    next run trains again rather than reusing the model."""
    def trainer_properties(**changes):
        config = TrainConfig(epochs=4, time_budget_minutes=5.0).replace(**changes)
        return _by_id(_pipeline(train=config))["Trainer"].exec_properties

    before = trainer_properties()
    assert trainer_properties(time_budget_minutes=10.0) != before and trainer_properties(epochs=8) != before
    assert trainer_properties() == before
