"""The pipeline's settings: one frozen dataclass, and the command-line flags that fill it."""

import argparse
import dataclasses
import errno
import math
import os
from typing import List, Optional, Tuple

from trainer.config import DERIVED_FIELDS, TrainConfig

PIPELINE_NAME = "signs"
ALL_CLASSES = tuple(range(10))  # `--classes all`: the ten digits of the sign-language-digits set


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a run of the pipeline depends on; the runners build it, nothing else reads flags."""

    data: Optional[str] = None  # h5 pair dir, .h5 file, TFRecords dir or class-folder root; None = synthetic
    classes: Tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # labels to keep (folder names / h5 labels)
    eval_percent: int = 20  # share of a hashed source (folder, one h5, TFRecords) held out for eval, 1..99
    bad_images: str = "fail"  # a bad image among good ones: "fail" the run, or "skip" and report it
    schema: Optional[str] = None  # a curated schema.pbtxt to validate against; None = inferred + curated
    min_class_share: float = 0.5  # warn when a class has < this x a split's mean per class, 0..1
    train: TrainConfig = TrainConfig()  # every training knob; num_classes follows `classes`
    min_accuracy: float = 0.9  # Evaluator's lower bound on eval SparseCategoricalAccuracy, 0 .. 1
    min_improvement: float = 0.0  # candidate accuracy minus the serving model's must be >= this
    keep_last: int = 0  # versions kept in the serving directory; 0 keeps every version
    pipeline_root: str = "pipeline_output"  # artifacts, ML Metadata (metadata.sqlite), logs
    serving_dir: Optional[str] = None  # push destination; None = <pipeline_root>/serving_model
    beam_args: Tuple[str, ...] = ()  # extra Apache Beam pipeline arguments
    enable_cache: bool = True  # reuse component outputs whose inputs did not change

    @property
    def epochs(self) -> int:
        return self.train.epochs

    @property
    def train_config(self) -> TrainConfig:
        """The Trainer's config: the flags' knobs, the head sized to the classes, checkpoints here."""
        return self.train.replace(num_classes=max(self.classes) + 1,
                                  checkpoint_root=os.path.join(self.pipeline_root, "checkpoints"))

    @property
    def push_dir(self) -> str:
        return self.serving_dir or os.path.join(self.pipeline_root, "serving_model")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.pipeline_root, "metadata.sqlite")

    @property
    def synthetic_dir(self) -> str:
        return os.path.join(self.pipeline_root, "data", "synthetic")


# Local Beam: the DirectRunner in this process, with a worker thread per core. Image encoding
# (Pillow), gzip and TFDV's statistics run outside the GIL, so threads use every core without
# the start-up and record shipping of worker processes. On 2 cores, ExampleGen + StatisticsGen
# on 100,000 images took 44.9 s with threads, 67.1 s with multi_processing (peak memory 1.0 GB
# against 2.4 GB for the process tree) and about 90 s single-threaded; see README, "Scale".
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=0")


def beam_pipeline_args(user_args: Tuple[str, ...]) -> List[str]:
    """The Beam arguments of a run: our DirectRunner defaults, overridden by the user's.

    Args:
      user_args: `--beam-arg` values, each `--name=value` (or a bare `--flag`).

    Returns:
      The defaults the user did not set (none if the user picked a runner other than the
      DirectRunner), then the user's arguments.
    """
    names = {a.split("=", 1)[0] for a in user_args}
    runner = next((a.split("=", 1)[1] for a in user_args if a.startswith("--runner=")), "DirectRunner")
    if runner not in ("DirectRunner", "direct"):
        return list(user_args)
    return [d for d in LOCAL_BEAM_ARGS if d.split("=", 1)[0] not in names] + list(user_args)


def _classes(text: str) -> Tuple[int, ...]:
    if text == "all":
        return ALL_CLASSES
    try:
        values = tuple(int(c) for c in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--classes takes comma-separated integers, got {text!r}") from e
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--classes takes non-negative labels, got {text!r}")
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"--classes {text}: label {twice[0]} is given more than once")
    return values


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {text}")
    return value


def _percent(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 99:
        raise argparse.ArgumentTypeError(f"expected a percent in 1..99, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def build_parser(description: str) -> argparse.ArgumentParser:
    """Returns the local runner's flags, each defaulting to the PipelineConfig field it sets."""
    d = PipelineConfig()
    p = ShortUsageParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=d.data,
                   help="a directory with train_signs.h5 and test_signs.h5; one SIGNS-format .h5 "
                        "file; a directory of tf.Example TFRecords (Split-train/ + Split-eval/, or "
                        "*tfrecord* files); or a folder of class sub-folders (<data>/<label>/*.jpg|png); "
                        "default: a generated synthetic set")
    p.add_argument("--classes", type=_classes, default=d.classes,
                   help="comma-separated labels to use (class folder names), or 'all' for 0-9")
    p.add_argument("--eval-percent", type=_percent, default=d.eval_percent,
                   help="percent of a folder, single-h5 or unsplit TFRecord source held out for "
                        "evaluation (by a hash of the image content)")
    p.add_argument("--bad-images", choices=("fail", "skip"), default=d.bad_images,
                   help="a bad image among good ones fails the run, or is skipped and reported")
    p.add_argument("--schema", default=d.schema,
                   help="a curated schema.pbtxt to validate the data against, instead of the "
                        "inferred one")
    p.add_argument("--min-class-share", type=_fraction, default=d.min_class_share,
                   help="warn when a class has fewer than this times a split's mean examples per class")
    p.add_argument("--min-accuracy", type=_fraction, default=d.min_accuracy,
                   help="eval accuracy a model needs to be blessed and pushed")
    p.add_argument("--min-improvement", type=_finite, default=d.min_improvement,
                   help="accuracy the model must gain over the model now serving (absolute; "
                        "0 = must not be worse)")
    p.add_argument("--keep-last", type=_non_negative, default=d.keep_last,
                   help="versions to keep in the serving directory after a push (0 = all)")
    p.add_argument("--pipeline-root", default=d.pipeline_root,
                   help="where artifacts and ML Metadata (metadata.sqlite) go")
    p.add_argument("--serving-dir", default=None,
                   help="push destination (default: <pipeline-root>/serving_model)")
    p.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                   help="an Apache Beam pipeline argument, repeatable (e.g. --beam-arg=--runner=FlinkRunner)")
    p.add_argument("--no-cache", action="store_false", dest="enable_cache",
                   help="re-run every component even when its inputs did not change")
    _add_training_flags(p.add_argument_group("training (recorded in history.json beside the model)"))
    return p


# Integer knobs that must be at least 1; every other integer knob must be at least 0.
_POSITIVE_INTS = ("batch_size", "shuffle_buffer", "steps_per_execution", "max_image_pixels")


def _add_training_flags(group) -> None:
    """One flag per TrainConfig field (`--batch-size`, `--no-augment`, ...), with its help text."""
    for field in dataclasses.fields(TrainConfig):
        if field.name in DERIVED_FIELDS:
            continue
        flag = "--" + field.name.replace("_", "-")
        meta = field.metadata
        if field.type in (bool, "bool"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                               help=meta["help"])
        elif field.type in (int, "int"):
            kind = _positive if field.name in _POSITIVE_INTS else _non_negative
            group.add_argument(flag, type=kind, default=field.default, help=meta["help"])
        elif field.type in (float, "float"):
            group.add_argument(flag, type=_non_negative_float, default=field.default, help=meta["help"])
        else:
            group.add_argument(flag, choices=meta["choices"], default=field.default, help=meta["help"])


def _non_negative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Maps parsed flags onto PipelineConfig (paths made absolute)."""
    return PipelineConfig(
        data=os.path.abspath(args.data) if args.data else None,
        classes=tuple(args.classes),
        eval_percent=args.eval_percent,
        bad_images=args.bad_images,
        schema=os.path.abspath(args.schema) if args.schema else None,
        min_class_share=args.min_class_share,
        train=TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                             if f.name not in DERIVED_FIELDS}),
        min_accuracy=args.min_accuracy,
        min_improvement=args.min_improvement,
        keep_last=args.keep_last,
        pipeline_root=os.path.abspath(args.pipeline_root),
        serving_dir=os.path.abspath(args.serving_dir) if args.serving_dir else None,
        beam_args=tuple(args.beam_args),
        enable_cache=args.enable_cache,
    )


class ShortUsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are two lines: a one-line usage, then what is wrong."""

    def error(self, message):
        self.exit(2, f"usage: {self.prog} [options] (--help lists them)\n{self.prog}: error: {message}\n")


def check_paths(config: PipelineConfig) -> Optional[str]:
    """What is wrong with the run's paths and classes, found before TFX is imported; None if nothing.

    A pipeline root that is a file or cannot be written, a `--data` that is a symlink loop, and
    classes that a folder source has no sub-folder for.
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
            return None  # the data source's own check says what is missing, in one line
        from components.data import sources  # pylint: disable=import-outside-toplevel
        from pipeline import data_source  # pylint: disable=import-outside-toplevel
        try:
            kind = data_source.resolve(config.data, config.synthetic_dir).kind
        except sources.SignsDataError:
            return None  # the run says what is wrong with the data, in one line
        if kind == sources.IMAGE_FOLDER:
            folders = sorted(n for n in os.listdir(config.data) if os.path.isdir(os.path.join(config.data, n)))
            missing = [c for c in config.classes if str(c) not in folders]
            if missing:
                return (f"--classes: {config.data} has no folder for label{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(str, missing))} (its class folders: {', '.join(folders)})")
    return None


def parse(argv: Optional[List[str]] = None, description: str = "") -> PipelineConfig:
    parser = build_parser(description)
    config = config_from_args(parser.parse_args(argv))
    problem = check_paths(config)
    if problem:
        parser.error(problem)
    return config
