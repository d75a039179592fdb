"""The SIGNS pipeline: `create_pipeline` wires the TFX components; it reads no flags or environment."""

from typing import Any, Dict, List, Optional, Sequence, Union

import tensorflow_model_analysis as tfma
from tfx.components import ExampleValidator, SchemaGen, StatisticsGen
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2
from ml_metadata.proto import metadata_store_pb2

from components import example_gen as signs_example_gen
from components.pusher import VersionedPusher
from components.baseline import LatestServedModel
from components.evaluator import BaselineAwareEvaluator
from components.review import Review
from components.trainer import SignsTrainer
from pipeline.configs import H5_PAIR, IMAGE_FOLDER

TRAINER_RUN_FN = "trainer.task.run_fn"


def example_gen_io(source_kind: str, eval_percent: int):
    """Returns ExampleGen's (input_config, output_config) for a source kind."""
    if source_kind == H5_PAIR:
        return example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="train", pattern="train_signs.h5"),
            example_gen_pb2.Input.Split(name="eval", pattern="test_signs.h5"),
        ]), None
    if source_kind == IMAGE_FOLDER:
        split_config = example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_percent)],
            # Hash the image bytes, so identical images always land in the same split.
            partition_feature_name="image")
        return (example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="*/*")]),
                example_gen_pb2.Output(split_config=split_config))
    raise ValueError(f"unknown source kind {source_kind!r}; expected {H5_PAIR!r} or {IMAGE_FOLDER!r}")


def eval_config() -> tfma.EvalConfig:
    """TFMA settings: candidate and baseline on the eval split, sliced overall and by label.

    The blessing needs accuracy >= `min_accuracy` and, when a model is serving, accuracy minus the
    baseline's >= `min_improvement`: BaselineAwareEvaluator writes both into the accuracy metric's
    threshold at run time, from its parameters. Loss, calibration (ECE) and the multi-class confusion matrix
    (argmax, from which per-class precision and recall follow) are computed for the review;
    slicing by label gives each class's accuracy (its recall) as a TFMA slice too.
    """
    model = {"label_key": "label", "signature_name": "serving_default", "preprocessing_function_names": []}
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name="candidate", **model),
                     tfma.ModelSpec(name="baseline", is_baseline=True, **model)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["label"])],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="SparseCategoricalAccuracy"),
                tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                tfma.MetricConfig(class_name="ExpectedCalibrationError", module="components.metrics"),
                tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            ]),
        ])


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: Union[str, data_types.RuntimeParameter],
    source_kind: str,
    classes: Sequence[int],
    eval_percent: int,
    train_config: Dict[str, Any],
    epochs: Union[int, data_types.RuntimeParameter],
    min_accuracy: Union[float, data_types.RuntimeParameter],
    min_improvement: Union[float, data_types.RuntimeParameter],
    serving_dir: str,
    serving_state: str = "",
    keep_last: int = 0,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
) -> tfx_pipeline.Pipeline:
    """Builds the TFX pipeline from SIGNS data to a pushed ResNet50.

    Args:
      pipeline_name: the pipeline's name in ML Metadata.
      pipeline_root: where component outputs go.
      data_root: the data directory ExampleGen reads (its `input_base`); a RuntimeParameter in Kubeflow.
      source_kind: H5_PAIR or IMAGE_FOLDER.
      classes: the labels to keep.
      eval_percent: percent of an IMAGE_FOLDER source held out for eval.
      train_config: a `trainer.config.TrainConfig` as a dict, passed to `run_fn`.
      epochs: training epochs (overrides train_config's).
      min_accuracy: the eval accuracy a model needs to be blessed.
        epochs, min_accuracy and min_improvement may be RuntimeParameters (the Kubeflow runner's).
      min_improvement: how much the candidate's accuracy must exceed the serving model's (0: not worse).
      serving_dir: the Pusher's filesystem destination.
      serving_state: `components.serving.state(serving_dir)` when the run starts (a cache key).
      keep_last: versions the Pusher keeps in `serving_dir`; 0 keeps all.
      metadata_connection_config: ML Metadata connection; None lets the runner choose.
      beam_pipeline_args: Apache Beam arguments for the data components and the Evaluator.
      enable_cache: reuse outputs of components whose inputs did not change.

    Returns:
      The `tfx.dsl.Pipeline`.
    """
    input_config, output_config = example_gen_io(source_kind, eval_percent)
    # Reads the source into tf.Example splits: PNG image, label, source id.
    example_gen = FileBasedExampleGen(
        input_base=data_root, input_config=input_config, output_config=output_config,
        custom_config=signs_example_gen.make_custom_config(classes),
        custom_executor_spec=executor_spec.BeamExecutorSpec(signs_example_gen.Executor),
    ).with_id("ExampleGen")
    # Per-split feature statistics, for the schema and for reviewing the data.
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"]).with_id("StatisticsGen")
    # The schema inferred from the statistics: features, types and shapes.
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"],
                           infer_feature_shape=True).with_id("SchemaGen")
    # Anomalies of the data against the schema.
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"]).with_id("ExampleValidator")
    # Trains the seed's ResNet50 and exports it with two serving signatures.
    trainer = SignsTrainer(
        run_fn=TRAINER_RUN_FN, examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"], epochs=epochs, custom_config=dict(train_config),
    ).with_id("Trainer")
    # The model now serving (newest version in serving_dir), or an absent marker on the first run.
    latest_served_model = LatestServedModel(
        serving_dir=serving_dir, serving_state=serving_state).with_id("LatestServedModel")
    # TFMA on the eval split, candidate against the serving model; blesses or not.
    evaluator = BaselineAwareEvaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=latest_served_model.outputs["baseline"],
        eval_config=eval_config(), min_accuracy=min_accuracy, min_improvement=min_improvement,
    ).with_id("Evaluator")
    # Copies a blessed model into the next integer version of serving_dir, atomically.
    pusher = VersionedPusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)),
        custom_config={"keep_last": keep_last},
    ).with_id("Pusher")
    # The HTML review: decision, metrics against the baseline, curves, confusions, data.
    review = Review(
        examples=example_gen.outputs["examples"], statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"], model=trainer.outputs["model"],
        evaluation=evaluator.outputs["evaluation"], blessing=evaluator.outputs["blessing"],
        baseline=latest_served_model.outputs["baseline"], pushed_model=pusher.outputs["pushed_model"],
    ).with_id("Review")

    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, trainer,
                    latest_served_model, evaluator, pusher, review],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or []),
    )
