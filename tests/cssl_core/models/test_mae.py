from __future__ import annotations

import pytest
import torch

from cssl_core.models import PRESETS, MAEConfig, MaskedAutoencoder, build_mae, masked_patch_loss, normalized_targets
from cssl_core.models.mae import patchify, unpatchify
from tests.cssl_core.train.fixtures import micro_config, micro_model, structured_images

B, S, N, C = 3, 32, 16, 32


@pytest.fixture
def model() -> MaskedAutoencoder:
    return micro_model().eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.from_numpy(structured_images(B, S, seed=1)).unsqueeze(1)


def test_presets_build_configs_and_reject_unknown_keys():
    tiny = MAEConfig.from_preset("tiny")
    assert (tiny.img_size, tiny.hidden_size, tiny.num_layers, tiny.num_heads) == (96, 192, 6, 3)
    assert tiny.num_patches in (36, 64)
    base = MAEConfig.from_preset("base", split_block=6)
    assert (base.img_size, base.patch_size, base.hidden_size, base.decoder_num_layers) == (224, 16, 768, 8)
    assert base.split_block == 6
    assert set(PRESETS) >= {"tiny", "base"}
    with pytest.raises(KeyError, match="unknown MAE config key"):
        MAEConfig.from_preset("tiny", hidden=64)
    with pytest.raises(KeyError, match="unknown MAE preset"):
        MAEConfig.from_preset("huge")
    with pytest.raises(ValueError, match="split_block"):
        micro_config(split_block=3)
    with pytest.raises(ValueError, match="divide"):
        micro_config(patch_size=7)
    assert MAEConfig.from_dict(tiny.to_dict()) == tiny


def test_shapes_of_the_split(model, x):
    assert model.embed(x).shape == (B, N, C)
    z = model.lower(x)
    assert z.shape == (B, N, C)
    assert model.upper(z).shape == (B, N, C)
    assert model.encode(x).shape == (B, N, C)
    assert model.pooled(x).shape == (B, C)
    assert build_mae("tiny").embed(torch.zeros(1, 1, 96, 96)).shape[1] == MAEConfig.from_preset("tiny").num_patches


def test_split_consistency_and_float16_latents(model, x):
    z = model.lower(x)
    torch.testing.assert_close(model.upper(z), model.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(model.pooled(x), model.encode(x).mean(1))
    # buffers store latents in float16; upper must accept them and stay close to the float32 path
    torch.testing.assert_close(model.upper(z.half()), model.upper(z), rtol=0, atol=5e-2)


def test_lower_does_not_depend_on_masking(model, x):
    z = model.lower(x)
    model.mae_loss(x, generator=torch.Generator().manual_seed(3))
    model.mae_loss(x, mask_ratio=0.5)
    assert torch.equal(model.lower(x), z)
    # and it is per-sample: the other slices of the batch do not change a slice's latents
    assert torch.equal(model.lower(x[:1]), z[:1])


def test_masking_is_reproducible_and_keeps_a_quarter(model, x):
    loss_a, out_a = model.mae_loss(x, generator=torch.Generator().manual_seed(7))
    loss_b, out_b = model.mae_loss(x, generator=torch.Generator().manual_seed(7))
    _, out_c = model.mae_loss(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(loss_a, loss_b) and torch.equal(out_a.mask, out_b.mask)
    assert not torch.equal(out_a.mask, out_c.mask)
    assert out_a.mask.shape == (B, N)
    assert torch.all(out_a.mask.sum(1) == N - N // 4)
    assert out_a.ids_keep.shape == (B, N // 4)


def test_only_visible_patches_reach_the_encoder(model, x):
    _, out = model.mae_loss(x, generator=torch.Generator().manual_seed(5))
    masked = int(torch.nonzero(out.mask[0])[0])
    row, col = divmod(masked, S // 8)
    perturbed = x.clone()
    perturbed[0, 0, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] = torch.rand(8, 8)
    _, out_p = model.mae_loss(perturbed, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out_p.pred, out.pred)  # the hidden patch's pixels never went in
    assert not torch.equal(out_p.target, out.target)


def test_loss_counts_only_masked_patches():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 16, 64, generator=g), torch.randn(2, 16, 64, generator=g)
    mask = torch.zeros(2, 16)
    mask[:, :12] = 1.0
    loss = masked_patch_loss(pred, target, mask)
    changed = target.clone()
    changed[:, 12:] += 100.0  # visible patches
    assert torch.equal(masked_patch_loss(pred, changed, mask), loss)
    changed[:, 0] += 1.0  # a masked patch
    assert masked_patch_loss(pred, changed, mask) > loss
    expected = (pred - target).square().mean(-1)[:, :12].mean()
    torch.testing.assert_close(loss, expected)


def test_targets_are_normalised_per_patch(x):
    patches = patchify(x, 8)
    assert patches.shape == (B, N, 64)
    assert torch.equal(unpatchify(patches, 8), x)
    target = normalized_targets(patches)
    torch.testing.assert_close(target.mean(-1), torch.zeros(B, N), atol=1e-5, rtol=0)
    informative = patches.var(-1) > 1e-3
    torch.testing.assert_close(target.var(-1)[informative], torch.ones(int(informative.sum())), atol=1e-3, rtol=0)
    manual = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(target, manual)
    # a flat patch gives a zero target, not NaN
    assert torch.equal(normalized_targets(torch.ones(1, 1, 64)), torch.zeros(1, 1, 64))


def test_norm_target_false_trains_on_the_pixels_themselves(x):
    """norm_target False: the target is the [0, 1] patch, so two slices that differ only in grey level (a window
    change) get different targets, which the per-patch normalised target cannot tell apart."""
    raw = MaskedAutoencoder(micro_config(norm_target=False)).eval()
    normed = MaskedAutoencoder(micro_config()).eval()
    assert normed.config.norm_target is True  # the default keeps the MAE paper's norm_pix_loss
    assert torch.equal(raw.patch_targets(x), patchify(x, raw.config.patch_size))
    brighter = (0.5 * x + 0.25).clamp(0, 1)
    assert not torch.allclose(raw.patch_targets(brighter), raw.patch_targets(x))
    torch.testing.assert_close(normed.patch_targets(brighter), normed.patch_targets(x), atol=1e-3, rtol=0)
    loss, out = raw.mae_loss(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, masked_patch_loss(out.pred, patchify(x, raw.config.patch_size), out.mask))


def test_a_config_saved_before_norm_target_existed_loads_with_the_normalised_target():
    saved = micro_config().to_dict()
    assert "norm_target" not in saved  # the default's identity (resume key, digest) is what it always was
    assert MAEConfig.from_dict(saved).norm_target is True
    raw = micro_config(norm_target=False).to_dict()
    assert raw["norm_target"] is False and MAEConfig.from_dict(raw) == micro_config(norm_target=False)


def test_patch_order_matches_the_patch_embedding(model):
    # a bright top-right patch must show up as token 3 both in the embedding and in patchify
    img = torch.zeros(1, 1, S, S)
    img[..., 0:8, 24:32] = 1.0
    diff = (model.embed(img) - model.embed(torch.zeros_like(img))).abs().sum(-1)[0]
    assert int(diff.argmax()) == 3
    assert int(patchify(img, 8).sum(-1)[0].argmax()) == 3


def test_freeze_lower_keeps_lower_fixed_and_trains_upper(x):
    model = micro_model()
    model.freeze_lower()
    model.train()
    assert all(not m.training for m in model.lower_modules) and model.blocks[1].training
    lower_before = [p.detach().clone() for m in model.lower_modules for p in m.parameters()]
    upper_before = [p.detach().clone() for p in model.blocks[1].parameters()]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = model.mae_loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    lower_after = [p for m in model.lower_modules for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(lower_before, lower_after, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(upper_before, model.blocks[1].parameters(), strict=True))
    assert all(p.grad is None for m in model.lower_modules for p in m.parameters())


def test_mae_loss_falls_on_structured_images():
    torch.manual_seed(0)
    model = micro_model(seed=0).train()
    data = torch.from_numpy(structured_images(64, S, seed=2)).unsqueeze(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    eval_g = torch.Generator()

    def held_out() -> tuple[float, float]:
        with torch.no_grad():
            loss, out = model.mae_loss(data, generator=eval_g.manual_seed(123))
        # predicting 0 (the mean of a normalised target) scores this: beating it means structure was learned
        trivial = (out.target.square().mean(-1) * out.mask).sum() / out.mask.sum()
        return float(loss), float(trivial)

    initial, trivial = held_out()
    for step in range(100):
        batch = data[(step * 16) % 64 : (step * 16) % 64 + 16]
        loss, _ = model.mae_loss(batch, generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final, _ = held_out()
    assert final < 0.8 * initial, (initial, final)
    assert final < trivial, (final, trivial)
