"""The SIGNS pipeline: `create_pipeline` wires the TFX components; it reads no flags or environment."""

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from tensorflow_data_validation.statistics.stats_options import StatsOptions
from tfx.components import ExampleValidator, SchemaGen, StatisticsGen
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types, pipeline as tfx_pipeline
from tfx.proto import pusher_pb2
from ml_metadata.proto import metadata_store_pb2

from components.data import example_gen as signs_example_gen
from components.data.example_gen import example_gen_io
from components.evaluation.baseline import LatestServedModel
from components.validation.data_checks import DataChecks
from components.evaluation.evaluator import BaselineAwareEvaluator, eval_config
from components.push.pusher import VersionedPusher
from components.report.review import Review
from components.validation.schema import CurateSchema
from components.training.signs_trainer import SignsTrainer
from pipeline.options import PIPELINE_NAME, PipelineConfig

TRAINER_RUN_FN = "trainer.task.run_fn"


def statistics(examples) -> StatisticsGen:
    """StatisticsGen whose memory does not grow with the data set.

    TFDV's default top-k and unique-value counts group every distinct value of every string
    feature, the PNG bytes of each image and each source id included, so the DirectRunner holds
    them all in memory. The sketch-based generator (Misra-Gries and K-minimum-values) keeps a fixed
    size summary per feature instead; its counts are estimates where values are many.
    """
    return StatisticsGen(examples=examples,
                         stats_options=StatsOptions(use_sketch_based_topk_uniques=True)).with_id("StatisticsGen")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one runner's pipeline reads and writes: what the local and the Kubeflow runner set apart.

    Attributes:
      pipeline_root: where component outputs go.
      data_root: the data directory ExampleGen reads (its `input_base`); a RuntimeParameter in Kubeflow.
      input_splits: (split name, glob pattern under `data_root`) pairs; see `example_gen_io`.
      source_kind: one of `components.data.sources.SOURCE_KINDS`.
      serving_dir: the Pusher's destination.
      serving_state: `components.push.version_dirs.state(serving_dir)` when the run starts (a cache key).
      schema_path: a curated schema.pbtxt to validate against; None infers one and curates it.
      kserve: with a serving dir on an object store, the Pusher writes each pushed version's KServe
        InferenceService beside it, with these settings (`components.push.kserve_manifests.inference_service`:
        name, namespace, service_account); None writes none.
      metadata_connection_config: ML Metadata connection; None lets the runner choose.
      beam_pipeline_args: Apache Beam arguments for the data components and the Evaluator.
      enable_cache: reuse outputs of components whose inputs did not change.
    """

    pipeline_root: str
    data_root: Union[str, data_types.RuntimeParameter]
    input_splits: Sequence[Tuple[str, str]]
    source_kind: str
    serving_dir: str
    serving_state: str = ""
    schema_path: Optional[str] = None
    kserve: Optional[Mapping[str, Any]] = None
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None
    beam_pipeline_args: Sequence[str] = ()
    enable_cache: bool = True


def create_pipeline(settings: PipelineConfig, where: Placement,
                    parameters: Optional[Mapping[str, data_types.RuntimeParameter]] = None) -> tfx_pipeline.Pipeline:
    """Builds the TFX pipeline from SIGNS data to a pushed ResNet50; both runners call it.

    Args:
      settings: what both runners share (`pipeline.options`): the classes, the thresholds, the
        Trainer's knobs. Its own paths are not read: `where` has this runner's.
      where: where this runner's pipeline reads and writes.
      parameters: Kubeflow's per-run settings, by the name of the setting or training knob each
        stands for; each is used in place of that value (their defaults should be the values).

    Returns:
      The `tfx.dsl.Pipeline`.
    """
    parameters = dict(parameters or {})
    shared = {f.name for f in dataclasses.fields(PipelineConfig)}
    # A setting's RuntimeParameter where Kubeflow gave one, else its value; the rest are the Trainer's knobs.
    value = {name: parameters.get(name, getattr(settings, name)) for name in shared}
    train_parameters = {name: p for name, p in parameters.items() if name not in shared}
    classes = settings.classes
    train_config = settings.train.for_pipeline(classes, where.pipeline_root)
    input_config, output_config = example_gen_io(where.input_splits, settings.eval_percent)
    classes_text = ",".join(str(c) for c in classes)
    # Reads the source into tf.Example splits: PNG image, label, source id.
    example_gen = FileBasedExampleGen(
        input_base=where.data_root, input_config=input_config, output_config=output_config,
        custom_config=signs_example_gen.make_custom_config(
            classes, where.source_kind, settings.bad_images,
            train_config.max_image_pixels),
        custom_executor_spec=executor_spec.BeamExecutorSpec(signs_example_gen.SignsExampleGenExecutor),
    ).with_id("ExampleGen")
    # Per-split feature statistics, for the schema and for reviewing the data.
    statistics_gen = statistics(example_gen.outputs["examples"])
    if where.schema_path:
        # The user's curated schema, used as it is.
        schema_gen = ImportSchemaGen(schema_file=where.schema_path).with_id("SchemaImporter")
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
                             classes=classes_text, min_class_share=value["min_class_share"]).with_id("DataChecks")
    # Trains the seed's ResNet50 and exports it with two serving signatures.
    trainer = SignsTrainer(
        run_fn=TRAINER_RUN_FN, examples=example_gen.outputs["examples"], schema=schema,
        config=train_config, parameters=train_parameters,
    ).with_id("Trainer")
    trainer.add_upstream_node(data_checks)  # runs only once the data passed the gate
    # The model now serving (newest version in serving_dir), or an absent marker on the first run.
    latest_served_model = LatestServedModel(
        serving_dir=where.serving_dir, serving_state=where.serving_state).with_id("LatestServedModel")
    # TFMA on the eval split, candidate against the serving model; blesses or not.
    evaluator = BaselineAwareEvaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=latest_served_model.outputs["baseline"],
        eval_config=eval_config(classes), min_accuracy=value["min_accuracy"],
        min_improvement=value["min_improvement"],
    ).with_id("Evaluator")
    # Copies a blessed model into the next integer version of serving_dir, atomically.
    pusher = VersionedPusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=where.serving_dir)),
        custom_config={"keep_last": settings.keep_last,
                       "kserve": dict(where.kserve) if where.kserve is not None else None},
    ).with_id("Pusher")
    # The HTML review: decision, metrics against the baseline, curves, confusions, data.
    review = Review(
        examples=example_gen.outputs["examples"], findings=data_checks.outputs["findings"],
        model=trainer.outputs["model"],
        evaluation=evaluator.outputs["evaluation"], blessing=evaluator.outputs["blessing"],
        baseline=latest_served_model.outputs["baseline"], pushed_model=pusher.outputs["pushed_model"],
    ).with_id("Review")

    return tfx_pipeline.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=where.pipeline_root,
        components=[example_gen, statistics_gen, *schema_components, example_validator,
                    data_checks, trainer, latest_served_model, evaluator, pusher, review],
        enable_cache=where.enable_cache,
        metadata_connection_config=where.metadata_connection_config,
        beam_pipeline_args=list(where.beam_pipeline_args),
    )
