"""The training configuration: every knob of the Trainer, passed through TFX's custom_config."""

import dataclasses
from typing import Any, Dict


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; recorded with the model in the Trainer's artifacts."""

    num_classes: int = 6  # outputs of the softmax; labels are 0 .. num_classes - 1
    epochs: int = 10  # passes over the train split; 0 exports the untrained model
    batch_size: int = 32  # images per step
    learning_rate: float = 1e-3  # Adam's step size (the seed's default); 1e-4 .. 3e-3 is sane
    lr_schedule: str = "cosine"  # "cosine" (decay to 1% by the last step) or "constant"
    bn_momentum: float = 0.9  # BatchNormalization moving-average momentum, 0.9 .. 0.99
    augment: bool = False  # random flips, shifts, turns, zoom and contrast on training batches
    shuffle_buffer: int = 2048  # examples shuffled together; >= train size shuffles fully
    seed: int = 0  # seeds weights init, shuffling and Keras's RNGs

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Builds a config from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})
