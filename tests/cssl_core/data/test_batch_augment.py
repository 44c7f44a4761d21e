"""`ssl.augment: batch`: the per-sample augmentation's operations, done on a whole uint8 batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cssl_core.data import WindowedSlices, make_loader
from cssl_core.data.augment_options import AugmentOptions
from cssl_core.data.batch_augment import augment_batch, draw_params
from tests.cssl_core.train.fixtures import write_windowed

S = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    return write_windowed(tmp_path_factory.mktemp("windowed") / "synthetic-lung", n=24, size=S)


def smooth_batch(n: int, size: int = S, seed: int = 0) -> torch.Tensor:
    """Varied uint8 images with structure in x (so that a flip or a crop shows)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)


def test_shapes_range_and_determinism():
    images, seeds = smooth_batch(8), list(range(100, 108))
    out = augment_batch(images, seeds, S)
    assert out.shape == (8, 1, S, S) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, augment_batch(images, seeds, S))  # same seeds, same bits
    assert not torch.equal(out, augment_batch(images, list(range(200, 208)), S))
    # a sample's augmentation is its seed's: not its batch's, nor its place in the batch
    alone = augment_batch(images[3:4], seeds[3:4], S)
    torch.testing.assert_close(out[3:4], alone, rtol=0, atol=1e-6)
    reordered = augment_batch(images.flip(0), seeds[::-1], S)
    torch.testing.assert_close(reordered.flip(0), out, rtol=0, atol=1e-6)
    # a smaller model size resizes every crop to it
    assert augment_batch(images, seeds, 16).shape == (8, 1, 16, 16)


def test_crop_and_resize_equal_interpolating_the_crop():
    images, seeds = smooth_batch(6), list(range(6))
    out = augment_batch(images, seeds, S, AugmentOptions(flip_prob=0.0, jitter_prob=0.0))
    params = draw_params(seeds, S)
    for i in range(6):
        top, left, h, w = (int(v[i]) for v in (params.top, params.left, params.crop_h, params.crop_w))
        crop = images[i : i + 1, :, top : top + h, left : left + w].float() * np.float32(1 / 255)
        expected = F.interpolate(crop, size=(S, S), mode="bilinear", align_corners=False).clamp(0, 1)
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=1e-5)
    # min_crop=1: the whole slice, resized to its own size, is the slice itself
    whole = augment_batch(images, seeds, S, AugmentOptions(min_crop=1.0, flip_prob=0.0, jitter_prob=0.0))
    torch.testing.assert_close(whole, images.float() * np.float32(1 / 255), rtol=0, atol=1e-5)


def test_flip_actually_flips():
    images, seeds = smooth_batch(5), list(range(40, 45))
    kept = augment_batch(images, seeds, S, AugmentOptions(flip_prob=0.0))
    flipped = augment_batch(images, seeds, S, AugmentOptions(flip_prob=1.0))  # same draws, only the flip differs
    assert torch.equal(flipped, kept.flip(-1))
    assert not torch.equal(flipped, kept)


def test_jitter_scales_and_shifts_within_range():
    grey = torch.full((64, 1, S, S), 128, dtype=torch.uint8)
    out = augment_batch(grey, list(range(64)), S, AugmentOptions(jitter_prob=1.0))
    level = 128 / 255
    values = out[:, 0, 0, 0]
    # a uniform image stays uniform (to interpolation rounding): the jitter is one draw per slice
    torch.testing.assert_close(out, values.view(-1, 1, 1, 1).expand_as(out), rtol=0, atol=1e-6)
    assert float(values.min()) >= level * 0.9 - 0.05 - 1e-6 and float(values.max()) <= level * 1.1 + 0.05 + 1e-6
    assert len(set(values.tolist())) > 32  # drawn per sample, not once per batch
    untouched = augment_batch(grey, list(range(64)), S, AugmentOptions(jitter_prob=0.0))
    torch.testing.assert_close(untouched, torch.full_like(untouched, level), rtol=0, atol=1e-6)


def test_parameter_distribution_matches_the_per_sample_pipeline():
    """RandSpatialCrop(random_size) draws each side uniformly in [round(0.6 S), S]; flip and jitter at p=0.5."""
    params = draw_params(range(4000), 224)
    smallest = round(224 * 0.6)
    for side in (params.crop_h, params.crop_w):
        assert side.min() == smallest and side.max() == 224
        assert abs(side.mean() - (smallest + 224) / 2) < 2
    assert np.all(params.top + params.crop_h <= 224) and np.all(params.left >= 0)
    assert 0.45 < params.flip.mean() < 0.55
    assert 0.45 < (params.scale != 1.0).mean() < 0.55 and 0.45 < (params.shift != 0.0).mean() < 0.55
    assert np.abs(params.scale - 1).max() <= 0.1 and np.abs(params.shift).max() <= 0.05
    with pytest.raises(ValueError, match="min_crop"):
        AugmentOptions(min_crop=0.0)


def test_stored_dataset_batches_uint8_with_the_sample_seeds(root):
    ds = WindowedSlices(root, as_stored=True)
    sample = ds[(2, 77)]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (1, S, S)
    assert sample["seed"] == 77 and sample["row"] == 2
    torch.testing.assert_close(sample["image"][0], torch.from_numpy(np.load(root / "slices.npy")[2]))
    batches = [make_loader(ds, 8, workers, seed=3) for workers in (0, 1)]
    first = [next(iter(loader)) for loader in batches]
    assert torch.equal(first[0]["seed"], first[1]["seed"]) and torch.equal(first[0]["image"], first[1]["image"])
    out = [augment_batch(b["image"], b["seed"], S) for b in first]
    assert torch.equal(out[0], out[1])  # worker count changes nothing
    with pytest.raises(ValueError, match="no transform"):
        WindowedSlices(root, transform=lambda x: x, as_stored=True)
    with pytest.raises(ValueError, match="seeds for a batch"):
        augment_batch(first[0]["image"], [1, 2], S)
