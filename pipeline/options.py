"""The pipeline's settings: one frozen dataclass, and the command-line flags that fill it."""

import argparse
import dataclasses
import errno
import math
import os
from typing import Any, Dict, List, Optional, Tuple

from components.data.layout import PipelineRoot
from common import flags
from common.flags import flag, setting
from components.training.train_config import TrainConfig, to_parameter

PIPELINE_NAME = "signs"
ALL_CLASSES = tuple(range(10))  # `--classes all`: the ten digits of the sign-language-digits set
MAX_LABEL = 999  # TrainConfig.num_classes is at most 1000


def _field(default, help_text: str, kubeflow: Optional[str] = None, parse=None, choices=None, **flag):
    """A PipelineConfig field and its flag (`common.flags.setting`).

    `kubeflow` says when a Kubeflow user sets it: "runtime" (a parameter of the compiled pipeline, set
    per run), "compile" (a flag of `kubeflow/runner.py compile`) or None (the local runner's only).
    """
    return setting(default, help_text, parse=parse, choices=choices, kubeflow=kubeflow, **flag)


def _classes(text: str) -> Tuple[int, ...]:
    if text == "all":
        return ALL_CLASSES
    try:
        values = tuple(int(c) for c in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--classes takes comma-separated integers, got {text!r}") from e
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--classes takes non-negative labels, got {text!r}")
    if max(values) > MAX_LABEL:
        raise argparse.ArgumentTypeError(f"--classes {text}: labels go up to {MAX_LABEL} (the model has an output "
                                         f"for each label up to the largest)")
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"--classes {text}: label {twice[0]} is given more than once")
    return values


_improvement = flags.within(float, -1.0, 1.0, "an accuracy difference from -1 to 1")
_fraction = flags.within(float, 0.0, 1.0, "a value in [0, 1]")
_percent = flags.within(int, 1, 99, "a percent in 1..99")
_non_negative = flags.within(int, 0, math.inf, "an integer >= 0")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a run of the pipeline depends on; the runners build it, nothing else reads flags.

    Both runners make their flags from these fields' definitions (and TrainConfig's); see
    `add_flags`.
    """

    data: Optional[str] = _field(
        None, "a directory with train_signs.h5 and test_signs.h5; one SIGNS-format .h5 file; a directory "
              "of tf.Example TFRecords (Split-train/ + Split-eval/, or *tfrecord* files); or a folder of "
              "class sub-folders (<data>/<label>/*.jpg|png); default: a generated synthetic set")
    classes: Tuple[int, ...] = _field((0, 1, 2, 3, 4, 5), "comma-separated labels to use (class folder names), "
                                      "or 'all' for 0-9", kubeflow="compile", parse=_classes)
    eval_percent: int = _field(20, "percent of a folder, single-h5 or unsplit TFRecord source held out for "
                                   "evaluation (by a hash of the image content)", kubeflow="compile", parse=_percent)
    bad_images: str = _field("fail", "a bad image among good ones fails the run, or is skipped and reported",
                             kubeflow="compile", choices=("fail", "skip"))
    schema: Optional[str] = _field(None, "a curated schema.pbtxt to validate the data against, instead of the "
                                         "inferred one")
    min_class_share: float = _field(0.5, "warn when a class has fewer than this times a split's mean examples "
                                         "per class", kubeflow="runtime", parse=_fraction)
    train: TrainConfig = TrainConfig()  # every training knob (flags of their own); num_classes follows `classes`
    min_accuracy: float = _field(0.9, "eval accuracy a model needs to be blessed and pushed",
                                 kubeflow="runtime", parse=_fraction)
    min_improvement: float = _field(0.0, "accuracy the model must gain over the model now serving (absolute; "
                                         "0 = must not be worse)", kubeflow="runtime", parse=_improvement)
    keep_last: int = _field(0, "versions to keep in the serving directory after a push (0 = all)",
                            kubeflow="compile", parse=_non_negative)
    pipeline_root: str = _field("pipeline_output", "where artifacts and ML Metadata (metadata.sqlite) go")
    serving_dir: Optional[str] = _field(None, "push destination (default: <pipeline-root>/serving_model)")
    beam_args: Tuple[str, ...] = _field((), "an Apache Beam pipeline argument, repeatable (e.g. "
                                            "--beam-arg=--runner=FlinkRunner)", kubeflow="compile",
                                        flag="--beam-arg", action="append")
    enable_cache: bool = _field(True, "re-run every component even when its inputs did not change",
                                flag="--no-cache", action="store_false")

    def __post_init__(self):
        if self.serving_dir is None:  # one name for the serving dir everywhere: the default resolved here
            object.__setattr__(self, "serving_dir", self.paths.serving_dir)

    @property
    def paths(self) -> PipelineRoot:
        """What this project keeps under the pipeline root, and where."""
        return PipelineRoot(self.pipeline_root)


# Local Beam: the DirectRunner in this process, with a worker thread per core. Image encoding
# (Pillow), gzip and TFDV's statistics run outside the GIL, so threads use every core without
# the start-up and record shipping of worker processes; on 2 cores threads ingest faster than
# multi_processing (`bench/ingest.py`; bench/README.md, "Ingest").
#
# The runner is Beam's FnApiRunner, named: Beam's DirectRunner, its default, first tries the
# Prism runner, a Go binary it downloads from GitHub at run time, and falls back to the
# FnApiRunner when that fails. Both runners (local and Kubeflow) name it.
IN_PROCESS_RUNNER = "--runner=FnApiRunner"
LOCAL_BEAM_ARGS = (IN_PROCESS_RUNNER, "--direct_running_mode=in_memory", "--direct_num_workers=0")
_IN_PROCESS = ("DirectRunner", "direct", "FnApiRunner")


def beam_pipeline_args(user_args: Tuple[str, ...], local: bool = True) -> List[str]:
    """The Beam arguments of a run: our in-process defaults, overridden by the user's.

    They reach the Beam components only (ExampleGen, StatisticsGen, ExampleValidator, the
    Evaluator); naming another runner drops our defaults, so those run on a cluster:

        --beam-arg=--runner=FlinkRunner --beam-arg=--flink_master=flink-jm:8081
            --beam-arg=--environment_type=DOCKER --beam-arg=--environment_config=IMAGE
        --beam-arg=--runner=SparkRunner --beam-arg=--spark_master_url=spark://spark-master:7077
        --beam-arg=--runner=DataflowRunner --beam-arg=--project=P --beam-arg=--region=R
            --beam-arg=--temp_location=gs://bucket/tmp --beam-arg=--setup_file=./setup.py
        --beam-arg=--direct_num_workers=4, or --beam-arg=--direct_running_mode=multi_processing

    A cluster's workers read `--data` where it says, so it must be mounted on them (the local
    runner takes a local path; data on gs:// runs on Kubeflow).

    Args:
      user_args: `--beam-arg` values, each `--name=value` (or a bare `--flag`).
      local: False for a Kubeflow pod, which gets the runner only (Beam's own thread count
        there, not the node's core count).

    Returns:
      The defaults the user did not set (none if the user picked a runner that is not in
      this process), then the user's arguments.
    """
    names = {a.split("=", 1)[0] for a in user_args}
    runner = next((a.split("=", 1)[1] for a in user_args if a.startswith("--runner=")), "FnApiRunner")
    if runner not in _IN_PROCESS:
        return list(user_args)
    defaults = LOCAL_BEAM_ARGS if local else (IN_PROCESS_RUNNER,)
    return [d for d in defaults if d.split("=", 1)[0] not in names] + list(user_args)


def check_value(name: str, text: str) -> Optional[str]:
    """What is wrong with `text` as the value of the setting `name`, as its flag would say (the
    local runner's check, for a compiled pipeline's runtime parameters); None if nothing, or if no
    setting has that name. Booleans are KFP's 0/1."""
    fields = [f for f in dataclasses.fields(PipelineConfig) if f.name != "train"] + list(TrainConfig.knobs())
    field = next((f for f in fields if f.name == name), None)
    if field is None:
        return None
    _, settings = flag(field)
    if settings.get("action") == argparse.BooleanOptionalAction:
        return None if text.strip().lower() in ("0", "1", "true", "false") else f"expected 0 or 1, got {text}"
    if "choices" in settings and text not in settings["choices"]:
        return f"expected one of {', '.join(map(str, settings['choices']))}, got {text}"
    parse = settings.get("type")
    if parse is not None:
        try:
            parse(text)
        except (argparse.ArgumentTypeError, ValueError) as e:
            return str(e) if isinstance(e, argparse.ArgumentTypeError) else f"not a valid value: {text}"
    return None


def add_flags(parser: argparse.ArgumentParser, kubeflow: bool = False,
              only: Optional[Tuple[str, ...]] = None) -> None:
    """Adds a flag for every PipelineConfig and TrainConfig field a runner sets.

    Args:
      parser: the runner's parser.
      kubeflow: only the fields a compiled pipeline takes (`kubeflow` "runtime" or "compile"); for a
        runtime field the flag sets the parameter's default in the package.
      only: only these fields (a tool that needs a few of the pipeline's settings).
    """
    def add(container, field):
        name, settings = flag(field)
        when = field.metadata.get("kubeflow")
        if kubeflow and when == "runtime":
            settings["help"] += f"; the default of the runtime parameter `{field.name}`"
        elif kubeflow and when == "compile":
            settings["help"] += "; fixed in the package"
        if (not kubeflow or when) and (only is None or field.name in only):
            container.add_argument(name, **settings)

    for field in dataclasses.fields(PipelineConfig):
        if field.name != "train":
            add(parser, field)
    group = parser if only else parser.add_argument_group("training (recorded in history.json beside the model)")
    for field in TrainConfig.knobs():
        add(group, field)


def build_parser(description: str) -> argparse.ArgumentParser:
    """Returns the local runner's flags, each defaulting to the field it sets."""
    parser = ShortUsageParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flags(parser)
    return parser


_PATHS = ("data", "schema", "pipeline_root", "serving_dir")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Maps parsed flags onto PipelineConfig (local paths made absolute); flags not given keep defaults."""
    values = flags.values(PipelineConfig, args)
    for name in _PATHS:
        if values.get(name) and "://" not in values[name]:
            values[name] = os.path.abspath(values[name])
    return PipelineConfig(**values, train=TrainConfig(**flags.values(TrainConfig, args)))


def runtime_parameters(config: PipelineConfig) -> Dict[str, Any]:
    """The values a compiled pipeline takes per run (fields marked `kubeflow="runtime"`), by name.

    Booleans become 0/1: KFP has no boolean runtime parameter.
    """
    values = {}
    for field in dataclasses.fields(PipelineConfig):
        if field.metadata.get("kubeflow") == "runtime":
            values[field.name] = getattr(config, field.name)
    for field in TrainConfig.knobs():
        if field.metadata.get("kubeflow") == "runtime":
            values[field.name] = to_parameter(getattr(config.train, field.name))
    return values


class ShortUsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are two lines: a one-line usage, then what is wrong."""

    def error(self, message):
        self.exit(2, f"usage: {self.prog} [options] (--help lists them)\n{self.prog}: error: {message}\n")


def check_paths(config: PipelineConfig) -> Optional[str]:
    """What is wrong with the run's paths, found before anything is imported or written; None if
    nothing: a pipeline root that is a file or cannot be written, a `--data` that is a symlink loop.
    """
    root = config.pipeline_root
    if os.path.exists(root) and not os.path.isdir(root):
        return f"--pipeline-root {root}: is a file, not a directory"
    existing = root
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        return f"--pipeline-root {root}: {existing} is not a writable directory"
    if config.data:
        try:
            os.stat(config.data)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return f"--data {config.data}: a symlink loop (too many levels of symbolic links)"
    return None  # the data source's own check says what else is wrong with --data, in one line


# The training of the synthetic demonstration (no --data): what a new user's first `make run` trains,
# on any 2-core CPU, with other programs beside it. Its drawn hands vary in pose, place, light and
# skin already, so the Trainer's augmentation is off; a short warm-up and a higher rate learn them in
# about 100 steps, where the defaults for real photos need more; at most 4 epochs in a 5-minute
# budget, which the Trainer re-plans in steps as they run (bench/README.md, "The first run"). A flag given on the command line still wins.
SYNTHETIC_TRAINING = {"epochs": 4, "learning_rate": 0.004, "warmup_epochs": 0.25, "augment": False,
                      "time_budget_minutes": 5.0}
# `--photo-augment auto` is off on the synthetic set: its drawn hands on one kind of wall learn so much
# slower under the photo augmentation that `make run`'s time budget ends before the model is blessed.
SYNTHETIC_PHOTO_AUGMENT_NOTE = ("Photo augmentation (new walls, colour casts, zoom out) is off for the synthetic "
                                "set; --photo-augment on turns it on.")


def parse(argv: Optional[List[str]] = None, description: str = "") -> PipelineConfig:
    parser = build_parser(description)
    parser.epilog = ("Without --data the run trains the synthetic demonstration set with "
                     + ", ".join(f"--{k.replace('_', '-')} {v:g}" if not isinstance(v, bool) else
                                 f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in SYNTHETIC_TRAINING.items())
                     + " unless those flags are given.")
    args = parser.parse_args(argv)
    if args.data is None:  # the demonstration's defaults; the flags given still win
        parser.set_defaults(**SYNTHETIC_TRAINING)
        args = parser.parse_args(argv)
    config = config_from_args(args)
    if config.data is None and config.train.photo_augment == "auto":
        config = dataclasses.replace(config, train=config.train.replace(photo_augment="off"))
    problem = check_paths(config)
    if problem:
        parser.error(problem)
    return config
