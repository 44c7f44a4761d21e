"""Training augmentation for windowed slices: mild, because the window itself is the domain.

Random resized crop, left-right flip and a small intensity jitter. Nothing that changes the grey-level
mapping much (no gamma, no histogram tricks): a strong intensity augmentation would blur the very
difference between windows that the continual stages are about. Output is clipped back to [0, 1] so the
model's input convention holds after jitter.
"""

from __future__ import annotations

import torch
from monai.transforms import (
    Compose,
    EnsureType,
    Lambda,
    RandFlip,
    RandScaleIntensity,
    RandShiftIntensity,
    RandSpatialCrop,
    Resize,
)

from cssl_core.data.augment_options import AugmentOptions


def _clip_unit(x: torch.Tensor) -> torch.Tensor:
    # module-level (not a lambda) so the pipeline pickles into spawned workers
    return x.clamp(0.0, 1.0)


def train_transforms(size: int, seed: int = 0, options: AugmentOptions = AugmentOptions()) -> Compose:
    """MONAI array pipeline (1, S, S) -> (1, size, size) float32 tensor in [0, 1].

    `seed` only fixes the RNG for callers that do not reseed per sample; `WindowedSlices` reseeds it from
    each sample's seed, which is what makes epochs reproducible.
    """
    smallest = max(1, int(round(size * options.min_crop)))
    pipeline = Compose(
        [
            RandSpatialCrop(roi_size=(smallest, smallest), max_roi_size=(size, size), random_size=True),
            Resize(spatial_size=(size, size), mode="bilinear", align_corners=False, anti_aliasing=False),
            RandFlip(prob=options.flip_prob, spatial_axis=1),
            RandScaleIntensity(factors=options.scale, prob=options.jitter_prob),
            RandShiftIntensity(offsets=options.shift, prob=options.jitter_prob),
            Lambda(func=_clip_unit),
            EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline
