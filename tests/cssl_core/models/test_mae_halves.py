"""The masked pass as two public halves (encode_visible, decode) and the one masked-patch loss."""

from __future__ import annotations

import pytest
import torch

from cssl_core.models.mae import keep_count, masked_patch_loss, patch_mask
from tests.cssl_core.train.fixtures import micro_model, structured_images

torch.set_num_threads(1)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.from_numpy(structured_images(5, 32, seed=2)).unsqueeze(1)


@pytest.mark.parametrize("training", [False, True])
def test_forward_masked_is_encode_visible_then_decode_bit_for_bit(x, training):
    model = micro_model(seed=3).train(training)
    with torch.no_grad():
        out = model.forward_masked(x, mask_ratio=0.6, generator=torch.Generator().manual_seed(9))
        latent, ids_keep = model.encode_visible(x, mask_ratio=0.6, generator=torch.Generator().manual_seed(9))
        pred = model.decode(latent, ids_keep)
    assert torch.equal(ids_keep, out.ids_keep)
    assert torch.equal(pred, out.pred)
    assert torch.equal(patch_mask(ids_keep, model.config.num_patches), out.mask)
    assert torch.equal(model.patch_targets(x), out.target)
    assert latent.shape == (5, keep_count(16, 0.6), model.config.hidden_size)


def test_masks_drawn_beforehand_give_the_same_pass(x):
    model = micro_model(seed=3).eval()
    ids_keep = model.draw_keep_indices(len(x), None, torch.Generator().manual_seed(4))
    with torch.no_grad():
        given = model.decode(*model.encode_visible(x, ids_keep))
        drawn = model.forward_masked(x, generator=torch.Generator().manual_seed(4)).pred
        other = model.forward_masked(x, generator=torch.Generator().manual_seed(5)).pred
    assert torch.equal(given, drawn)
    assert not torch.equal(given, other)
    # the config's mask ratio (0.75 of 16 patches) leaves 4 visible, in raster order
    assert ids_keep.shape == (5, 4)
    assert torch.equal(ids_keep, ids_keep.sort(dim=1).values)


def test_keep_count_rounds_and_refuses_ratios_outside_the_open_interval():
    assert keep_count(16, 0.75) == 4
    assert keep_count(16, 0.6) == 6  # round(6.4)
    assert keep_count(4, 0.99) == 1  # never zero visible tokens
    for ratio in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="mask_ratio"):
            keep_count(16, ratio)
    with pytest.raises(ValueError, match="mask_ratio"):
        micro_model().mae_loss(torch.zeros(1, 1, 32, 32), mask_ratio=1.0)


def test_per_sample_loss_is_the_export_formula_and_averages_to_the_training_loss(x):
    model = micro_model(seed=1).eval()
    with torch.no_grad():
        per_sample, out = model.mae_loss(x, generator=torch.Generator().manual_seed(2), reduction="none")
        mean, _ = model.mae_loss(x, generator=torch.Generator().manual_seed(2))
    # the per-sample score export.encode_rows computed inline before it called this function
    per_patch = ((out.pred.float() - out.target) ** 2).mean(dim=-1)
    assert torch.equal(per_sample, (per_patch * out.mask).sum(1) / out.mask.sum(1))
    assert per_sample.shape == (5,)
    # every sample hides as many patches, so the mean of the scores is the batch loss (up to summation order)
    torch.testing.assert_close(per_sample.mean(), mean, rtol=1e-6, atol=0)
    assert len(set(per_sample.tolist())) == 5


def test_loss_reductions_on_a_sample_without_masked_patches():
    pred, target = torch.ones(2, 4, 3), torch.zeros(2, 4, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    per_sample = masked_patch_loss(pred, target, mask, reduction="none")
    assert per_sample[0] == 1.0 and torch.isnan(per_sample[1])  # undefined, not silently zero
    assert masked_patch_loss(pred, target, mask) == 1.0
    assert masked_patch_loss(pred, target, torch.zeros(2, 4)) == 0.0
    with pytest.raises(ValueError, match="reduction"):
        masked_patch_loss(pred, target, mask, reduction="sum")
