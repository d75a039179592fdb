"""The pipeline's settings: one frozen dataclass, and the command-line flags that fill it."""

import argparse
import dataclasses
import os
from typing import List, Optional, Tuple

PIPELINE_NAME = "signs"
H5_PAIR = "h5_pair"  # a directory holding train_signs.h5 and test_signs.h5
IMAGE_FOLDER = "image_folder"  # <root>/<label>/*.jpg|png, split by image-content hash


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a run of the pipeline depends on; the runners build it, nothing else reads flags."""

    data: Optional[str] = None  # SIGNS h5 pair dir or class-folder root; None = synthetic default
    classes: Tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # labels to keep (folder names / h5 labels)
    eval_percent: int = 20  # share of a folder source held out for eval, by image-content hash
    epochs: int = 10  # training passes over the train split
    batch_size: int = 32  # images per training step
    learning_rate: float = 1e-3  # Adam step size
    min_accuracy: float = 0.9  # Evaluator's lower bound on eval SparseCategoricalAccuracy, 0 .. 1
    min_improvement: float = 0.0  # candidate accuracy minus the serving model's must be >= this
    keep_last: int = 0  # versions kept in the serving directory; 0 keeps every version
    pipeline_root: str = "pipeline_output"  # artifacts, ML Metadata (metadata.sqlite), logs
    serving_dir: Optional[str] = None  # push destination; None = <pipeline_root>/serving_model
    beam_args: Tuple[str, ...] = ()  # extra Apache Beam pipeline arguments
    enable_cache: bool = True  # reuse component outputs whose inputs did not change

    @property
    def push_dir(self) -> str:
        return self.serving_dir or os.path.join(self.pipeline_root, "serving_model")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.pipeline_root, "metadata.sqlite")

    @property
    def synthetic_dir(self) -> str:
        return os.path.join(self.pipeline_root, "data", "synthetic")


def _classes(text: str) -> Tuple[int, ...]:
    try:
        values = tuple(int(c) for c in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--classes takes comma-separated integers, got {text!r}") from e
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--classes takes non-negative labels, got {text!r}")
    return values


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {text}")
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
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=d.data,
                   help="a directory with train_signs.h5 and test_signs.h5, or a folder of class "
                        "sub-folders (<data>/<label>/*.jpg|png); default: a generated synthetic set")
    p.add_argument("--classes", type=_classes, default=d.classes,
                   help="comma-separated labels to use (class folder names)")
    p.add_argument("--eval-percent", type=int, default=d.eval_percent,
                   help="percent of a folder source held out for evaluation (by image hash)")
    p.add_argument("--epochs", type=_non_negative, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=_positive, default=d.batch_size, help="images per step")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam learning rate")
    p.add_argument("--min-accuracy", type=_fraction, default=d.min_accuracy,
                   help="eval accuracy a model needs to be blessed and pushed")
    p.add_argument("--min-improvement", type=float, default=d.min_improvement,
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
    return p


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Maps parsed flags onto PipelineConfig (paths made absolute)."""
    return PipelineConfig(
        data=os.path.abspath(args.data) if args.data else None,
        classes=tuple(args.classes),
        eval_percent=args.eval_percent,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        min_accuracy=args.min_accuracy,
        min_improvement=args.min_improvement,
        keep_last=args.keep_last,
        pipeline_root=os.path.abspath(args.pipeline_root),
        serving_dir=os.path.abspath(args.serving_dir) if args.serving_dir else None,
        beam_args=tuple(args.beam_args),
        enable_cache=args.enable_cache,
    )


def parse(argv: Optional[List[str]] = None, description: str = "") -> PipelineConfig:
    return config_from_args(build_parser(description).parse_args(argv))
