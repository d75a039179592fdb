"""The SIGNS pipeline: `create_pipeline` wires the TFX components; it reads no flags or environment."""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow_model_analysis as tfma
from tfx.components import (Evaluator, ExampleValidator, Pusher, SchemaGen, StatisticsGen,
                            Trainer)
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2
from ml_metadata.proto import metadata_store_pb2

from components import example_gen as signs_example_gen
from components.data_checks import DataChecks
from components.schema import CurateSchema

TRAINER_RUN_FN = "trainer.task.run_fn"


def example_gen_io(input_splits: Sequence[Tuple[str, str]], eval_percent: int):
    """Returns ExampleGen's (input_config, output_config) for a source's input splits.

    Args:
      input_splits: (name, glob pattern under the data root) pairs. Two or more are used as they
        are (e.g. train_signs.h5 -> train, test_signs.h5 -> eval); a single one is split into
        train and eval by a hash of each record's PNG image bytes.
      eval_percent: percent of a single input split that goes to eval, 1..99.
    """
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=pattern) for name, pattern in input_splits])
    if len(input_splits) > 1:
        return input_config, None
    if not 1 <= eval_percent <= 99:
        raise ValueError(f"eval_percent must be in 1..99, got {eval_percent}")
    split_config = example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_percent)],
        # Hash the image bytes (PNG of the 64x64 pixels), so identical images land in the same split.
        partition_feature_name="image")
    return input_config, example_gen_pb2.Output(split_config=split_config)


def eval_config(min_accuracy: float) -> tfma.EvalConfig:
    """TFMA settings: overall accuracy with a lower bound, which decides the blessing."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", signature_name="serving_default",
                                    preprocessing_function_names=[])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=accuracy_threshold),
        ])])


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    input_splits: Sequence[Tuple[str, str]],
    source_kind: str,
    classes: Sequence[int],
    eval_percent: int,
    train_config: Dict[str, Any],
    min_accuracy: float,
    serving_dir: str,
    bad_images: str = "fail",
    schema_path: Optional[str] = None,
    min_class_share: float = 0.5,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
) -> tfx_pipeline.Pipeline:
    """Builds the TFX pipeline from SIGNS data to a pushed ResNet50.

    Args:
      pipeline_name: the pipeline's name in ML Metadata.
      pipeline_root: where component outputs go.
      data_root: the data directory ExampleGen reads (its `input_base`).
      input_splits: (split name, glob pattern under `data_root`) pairs; see `example_gen_io`.
      source_kind: one of `components.sources.SOURCE_KINDS`.
      classes: the labels to keep.
      eval_percent: percent of a single-split source held out for eval.
      train_config: a `trainer.config.TrainConfig` as a dict, passed to `run_fn`.
      min_accuracy: the eval accuracy a model needs to be blessed.
      serving_dir: the Pusher's filesystem destination.
      bad_images: 'fail' (default) stops at a bad image; 'skip' leaves it out and reports it.
      schema_path: a curated schema.pbtxt to validate against; None infers one and curates it.
      min_class_share: DataChecks warns about a class below this share of a split's mean.
      metadata_connection_config: ML Metadata connection; None lets the runner choose.
      beam_pipeline_args: Apache Beam arguments for the data components and the Evaluator.
      enable_cache: reuse outputs of components whose inputs did not change.

    Returns:
      The `tfx.dsl.Pipeline`.
    """
    input_config, output_config = example_gen_io(input_splits, eval_percent)
    classes_text = ",".join(str(c) for c in classes)
    # Reads the source into tf.Example splits: PNG image, label, source id.
    example_gen = FileBasedExampleGen(
        input_base=data_root, input_config=input_config, output_config=output_config,
        custom_config=signs_example_gen.make_custom_config(classes, source_kind, bad_images),
        custom_executor_spec=executor_spec.BeamExecutorSpec(signs_example_gen.Executor),
    ).with_id("ExampleGen")
    # Per-split feature statistics, for the schema and for reviewing the data.
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"]).with_id("StatisticsGen")
    if schema_path:
        # The user's curated schema, used as it is.
        schema_gen = ImportSchemaGen(schema_file=schema_path).with_id("SchemaImporter")
        schema_components = [schema_gen]
        schema = schema_gen.outputs["schema"]
    else:
        # The schema inferred from the statistics: features, types and shapes.
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"],
                               infer_feature_shape=True).with_id("SchemaGen")
        # Adds what we know: the label's domain, every feature required.
        curate_schema = CurateSchema(schema=schema_gen.outputs["schema"],
                                     classes=classes_text).with_id("CurateSchema")
        schema_components = [schema_gen, curate_schema]
        schema = curate_schema.outputs["curated_schema"]
    # Anomalies of the data against the schema.
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema).with_id("ExampleValidator")
    # The gate: anomalies and our own checks; errors stop the run here, before the Trainer.
    data_checks = DataChecks(examples=example_gen.outputs["examples"],
                             anomalies=example_validator.outputs["anomalies"],
                             classes=classes_text, min_class_share=min_class_share).with_id("DataChecks")
    # Trains the seed's ResNet50 and exports it with two serving signatures.
    trainer = Trainer(
        run_fn=TRAINER_RUN_FN, examples=example_gen.outputs["examples"],
        schema=schema, custom_config=dict(train_config),
    ).with_id("Trainer")
    trainer.add_upstream_node(data_checks)  # runs only once the data passed the gate
    # TFMA on the eval split; blesses the model if it clears the accuracy bound.
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        eval_config=eval_config(min_accuracy),
    ).with_id("Evaluator")
    # Copies a blessed model to the serving directory; does nothing for an unblessed one.
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)),
    ).with_id("Pusher")

    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, *schema_components, example_validator,
                    data_checks, trainer, evaluator, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or []),
    )
