"""AugmentOptions: one set of ranges for both augmentation paths, refused when out of range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.data.augment_options import AugmentOptions
from cssl_core.data.batch_augment import draw_params
from cssl_core.data.transforms import train_transforms


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_crop", 0.0), ("min_crop", 1.5), ("flip_prob", -0.1), ("jitter_prob", 1.1), ("scale", -0.1), ("shift", -1.0)],
)
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentOptions(**{field: value})


def test_both_paths_read_the_same_options():
    """No flip and no jitter in the options: neither path flips or changes intensities."""
    still = AugmentOptions(min_crop=1.0, flip_prob=0.0, jitter_prob=0.0)
    params = draw_params(range(200), 32, still)
    assert not params.flip.any() and np.all(params.scale == 1.0) and np.all(params.shift == 0.0)
    assert np.all(params.crop_h == 32) and np.all(params.crop_w == 32)
    image = torch.rand(1, 32, 32)
    assert torch.allclose(train_transforms(32, seed=5, options=still)(image), image, atol=1e-6)
    flips = draw_params(range(200), 32, AugmentOptions(flip_prob=1.0))
    assert flips.flip.all()
