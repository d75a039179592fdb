"""The training configuration: every knob of the Trainer, passed through TFX's custom_config.

Each field carries its help text, its allowed values where it has them, and when a Kubeflow
user sets it: per run (`runtime`, a parameter of the compiled pipeline) or when compiling
(`compile`). Both runners make a flag of every field from these definitions (`--batch-size`,
`--early-stopping-patience`, ...); the Trainer component takes each field as a parameter of its
own, and the Trainer writes the whole config into `history.json` beside the model.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

from common.flags import bounds_problem, setting
from components.data.layout import PipelineRoot
from components.data.sources import MAX_IMAGE_PIXELS

# The augmentation for photos from elsewhere (trainer/augment.py and Keras's colour layers), which
# `photo_augment` turns off at once.
PHOTO_AUGMENT_FIELDS = ("zoom_out", "background", "colour_cast", "hue", "saturation")
# Fields the runners fill in themselves rather than from a flag.
DERIVED_FIELDS = ("num_classes", "checkpoint_root")
# The exported model's raw-image signature (trainer/export.py writes it; the Review, predict and
# every REST client call it): encoded image bytes in, class probabilities out.
IMAGE_BYTES_SIGNATURE = "serve_image_bytes"
# Beside the exported model (trainer/task.py writes it): the config, the devices, per-epoch metrics.
HISTORY_FILE = "history.json"


def _field(default, help_text: str, choices: Optional[Tuple[str, ...]] = None, kubeflow: str = "runtime",
           bounds: Optional[Tuple[float, float]] = None):
    """A TrainConfig field and its flag: its help, its allowed values (`choices`, or a number within
    `bounds`, both ends included) and when a Kubeflow user sets it."""
    return setting(default, help_text, choices=choices, bounds=bounds, kubeflow=kubeflow)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; recorded with the model in the Trainer's artifacts."""

    num_classes: int = _field(6, "outputs of the softmax; labels are 0 .. num_classes - 1", bounds=(1, 1000))
    # 30: on real photos fewer left the model underfit and more scored worse on held-out people and
    # on the phone proxy (bench/README.md, "Accuracy on real photos"). The learning rate's cosine
    # follows the epochs; `make run`'s budget cuts them.
    epochs: int = _field(30, "passes over the train split; 0 exports the untrained model", bounds=(0, 10000))
    batch_size: int = _field(32, "images per step on one device; with N GPUs a step takes N x this", bounds=(1, 4096))
    learning_rate: float = _field(1e-3, "Adam's peak step size (scaled by the number of GPUs)", bounds=(1e-07, 1.0))
    lr_schedule: str = _field("cosine", "cosine: decay to 1%% by the last step; constant: no decay",
                              ("cosine", "constant"))
    warmup_epochs: float = _field(1.0, "epochs of linear warm-up from 0 to the learning rate", bounds=(0, 10000))
    weight_decay: float = _field(0.0, "decoupled weight decay of Adam (AdamW style); 0 = none", bounds=(0, 1))
    bn_momentum: float = _field(0.9, "BatchNormalization moving-average momentum, 0.9 .. 0.99", bounds=(0, 0.9999))
    precise_bn: bool = _field(True, "before each validation, set the batch-norm statistics to those of 256 "
                                    "un-augmented training images (trainer/calibration.py): the epoch's eval "
                                    "accuracy then scores its own weights; off: Keras's moving averages")
    zero_init_residual: bool = _field(True, "start each residual branch's last BatchNormalization scale "
                                            "at 0, so every block starts as its shortcut and the first "
                                            "epochs learn faster; off: the seed's start at 1")
    augment: bool = _field(True, "random flips, shifts, turns, zoom, light, colour and new walls on "
                                 "training images, in tf.data (the knobs below)")
    flip: bool = _field(True, "mirror left and right (a left hand signs like a mirrored right hand)")
    rotation_degrees: float = _field(12.0, "largest random turn, in degrees either way", bounds=(0, 180))
    shift: float = _field(0.08, "largest random shift, as a fraction of the image side", bounds=(0, 1))
    zoom: float = _field(0.1, "largest random zoom in or out, as a fraction", bounds=(0, 0.9))
    brightness: float = _field(0.15, "largest random brightness change, as a fraction of full scale", bounds=(0, 1))
    contrast: float = _field(0.2, "largest random contrast change, as a fraction", bounds=(0, 1))
    hue: float = _field(0.03, "largest random hue turn, as a fraction of the colour wheel either way "
                              "(0.05: 18 degrees); 0 = none", bounds=(0, 0.5))
    saturation: float = _field(0.3, "random saturation change: s multiplies it by (1-s)/(1+s) to "
                                    "(1+s)/(1-s) (0.3: 0.54x to 1.9x), up to 0.9; 0 = none", bounds=(0, 0.9))
    photo_augment: str = _field("auto", "the augmentation for photos from elsewhere: zoom_out, background, "
                                        "colour_cast, hue and saturation below (off: 0 each); auto = on, "
                                        "except on the local runner's generated synthetic set, whose drawn "
                                        "hands it slows too much for `make run`'s time budget",
                                ("auto", "on", "off"))
    zoom_out: float = _field(0.35, "largest random zoom out, as a fraction, where it exceeds `zoom` "
                                   "(0.35: the hand at down to 74 %% of the frame); 0 = as far as `zoom`", bounds=(0, 0.9))
    background: float = _field(0.5, "share of training images whose wall is replaced by a random colour, "
                                    "gradient or texture (trainer/augment.py), 0 .. 1; 0 = none", bounds=(0, 1))
    colour_cast: float = _field(0.2, "largest random gain of each colour channel on its own, as a fraction "
                                     "(0.2: x0.8 .. x1.2; another white balance); 0 = none", bounds=(0, 1))
    mixup: float = _field(0.0, "mixup: each training image blended with another, labels too, by a share "
                               "drawn from Beta(a, a) with this a (0.2 typical); 0 = none", bounds=(0, 100))
    cutmix: float = _field(0.0, "cutmix: a box of another training image pasted in, labels mixed by its area, "
                                "drawn from Beta(a, a) with this a (1.0 typical); 0 = none; with mixup, "
                                "each batch takes one of the two", bounds=(0, 100))
    label_smoothing: float = _field(0.0, "share of each training label spread evenly over the classes "
                                         "(0.1: the true class 0.9 + 0.1 / classes); 0 = none", bounds=(0, 0.99))
    standardize: bool = _field(False, "put each image to zero mean and unit variance inside the model "
                                      "(served too): a photo's exposure and contrast stop counting")
    flip_average: bool = _field(False, "the exported model answers with the mean of its probabilities for "
                                       "each image and its mirror image (test-time augmentation; twice "
                                       "the computation per image)")
    early_stopping_patience: int = _field(
        6, "stop after this many epochs without a better eval accuracy; 0 = never stop early", bounds=(0, 10000))
    time_budget_minutes: float = _field(
        0.0, "minutes of training (steps, validation, checkpoints): the Trainer re-plans the steps that fit "
             "as they run, ends the learning rate's decay on the last of them and stops there; 0 = no budget", bounds=(0, 10080))
    restore_best_weights: bool = _field(True, "export the weights of the epoch with the best eval "
                                              "accuracy, not the last epoch's")
    shuffle_buffer: int = _field(4096, "examples shuffled together when the split is not cached "
                                       "(a cached split is shuffled whole)", bounds=(1, 10_000_000))
    cache_limit_mb: int = _field(2048, "keep decoded images in memory when the split fits in this", bounds=(0, 10_000_000))
    seed: int = _field(0, "seeds weight init, shuffling, augmentation and Keras's RNGs", bounds=(0, 2 ** 31 - 1))
    precision: str = _field("auto", "float32, mixed_float16 or mixed_bfloat16 activations; auto = "
                                    "mixed_float16 on GPUs, mixed_bfloat16 on CPUs with AMX-BF16, "
                                    "float32 on other CPUs; the exported model is float32",
                            ("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    jit_compile: str = _field("auto", "XLA-compile the train step; auto = on GPUs only",
                              ("auto", "on", "off"))
    distribute: str = _field("auto", "auto: MirroredStrategy over every GPU of the node; off: "
                                     "one device", ("auto", "off"))
    steps_per_execution: int = _field(1, "train steps run per call into the TF runtime", bounds=(1, 10000))
    checkpoint: bool = _field(True, "checkpoint every epoch so a re-run of the same training resumes")
    checkpoint_root: str = _field("", "where resumable checkpoints live, keyed by the training's "
                                      "inputs (the runners set <pipeline-root>/checkpoints)")
    tensorboard: bool = _field(True, "write TensorBoard logs into the ModelRun artifact")
    max_image_pixels: int = _field(MAX_IMAGE_PIXELS, "an image declaring more pixels (width x height) is "
                                   "refused before it is decoded: in ExampleGen, predict and the served model",
                                   kubeflow="compile", bounds=(1, 10_000_000_000))  # ExampleGen's setting too: fixed when compiling

    def __post_init__(self):
        for field in dataclasses.fields(self):
            problem = bounds_problem(field, getattr(self, field.name))
            if problem:
                raise ValueError(f"{field.name}: {problem}")

    @classmethod
    def knobs(cls) -> Tuple[dataclasses.Field, ...]:
        """The fields a user sets (a flag each); the rest are derived by the runners."""
        return tuple(f for f in dataclasses.fields(cls) if f.name not in DERIVED_FIELDS)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Builds a config from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def for_pipeline(self, classes: Tuple[int, ...], pipeline_root: str) -> "TrainConfig":
        """These knobs with the values both runners derive: the head sized to the classes, and the
        checkpoints under the pipeline root (a path, or a gs://, s3://, minio:// URL)."""
        return self.replace(num_classes=max(classes) + 1, checkpoint_root=PipelineRoot(pipeline_root).checkpoints)

    def soft_labels(self) -> bool:
        """Whether the Trainer's labels are one-hot (smoothed or mixed) rather than class numbers."""
        return bool(self.label_smoothing or (self.augment and (self.mixup or self.cutmix)))

    def augmentation(self) -> "TrainConfig":
        """This config with the photo augmentation's knobs at 0 where `photo_augment` is off."""
        if self.photo_augment != "off":
            return self
        return self.replace(**{name: 0.0 for name in PHOTO_AUGMENT_FIELDS})


# KFP has no boolean runtime parameter: a knob travels as a parameter in these types, booleans as
# 0/1, and is read back into its TrainConfig type. Every crossing of that boundary goes through these.
def parameter_type(field: dataclasses.Field) -> type:
    kind = {"bool": bool, "int": int, "float": float, "str": str}.get(field.type, field.type)
    return int if kind is bool else kind


def to_parameter(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def from_parameter(field: dataclasses.Field, value: Any) -> Any:
    return bool(int(value)) if field.type in (bool, "bool") else parameter_type(field)(value)
