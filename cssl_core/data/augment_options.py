"""The ranges of the training augmentation, in one place.

Two code paths augment training slices: MONAI per sample in the loader (`transforms.train_transforms`,
`ssl.augment: sample`) and torch ops on the whole batch on the device (`batch_augment.augment_batch`,
`ssl.augment: batch`). They must draw from the same ranges, so both take their ranges from this one class
instead of each repeating the numbers as keyword defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentOptions:
    """Ranges of the mild training augmentation (the window is the domain: nothing that remaps grey levels much).

    Args:
        min_crop: smallest side of the random resized crop, as a fraction of the slice side, in (0, 1].
        flip_prob: probability of a left-right flip, in [0, 1].
        scale: intensity scale x * (1 + u), u ~ U(-scale, scale); >= 0.
        shift: intensity shift x + v, v ~ U(-shift, shift); >= 0.
        jitter_prob: probability of each of scale and shift being applied, in [0, 1].
    """

    min_crop: float = 0.6
    flip_prob: float = 0.5
    scale: float = 0.1
    shift: float = 0.05
    jitter_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.min_crop <= 1.0:
            raise ValueError(f"min_crop must be in (0, 1], got {self.min_crop}")
        for name in ("flip_prob", "jitter_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("scale", "shift"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
