from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import cssl_core.strategies.latent_replay as latent_replay
from cssl_core.distill import bke, wkd_loss
from cssl_core.models.mae import keep_count
from cssl_core.strategies import FinetuneStrategy, build_strategy
from cssl_core.strategies.replay_sampling import draw_indices
from tests.cssl_core.strategies.helpers import latent_buffer, micro_model, new_batch, start, teacher_of


def _setup(n: int = 10, **options):
    model = micro_model()
    model.freeze_lower()
    teacher = teacher_of(model)
    calls: list[int] = []
    upper = teacher.upper
    teacher.upper = lambda z: (calls.append(z.shape[0]), upper(z))[1]
    strategy = build_strategy("latent_replay", {"replay_batch_size": 6, **options})
    return model, teacher, strategy, latent_buffer(model, n), calls


def test_teacher_targets_are_computed_once_in_chunks_at_stage_start(monkeypatch):
    monkeypatch.setattr(latent_replay, "TEACHER_CHUNK", 4)
    model, teacher, strategy, buffer, calls = _setup(n=10)
    start(strategy, model, replay=buffer, teacher=teacher)
    assert calls == [4, 4, 2]  # the whole buffer, chunk by chunk
    z = torch.from_numpy(buffer.data).float()
    with torch.no_grad():
        assert torch.allclose(strategy.targets, upper_of(teacher)(z), atol=1e-6)
    assert strategy.latents.dtype == torch.float16 and torch.equal(strategy.latents.float(), z)
    for _ in range(3):
        losses = strategy.observe(new_batch())
        losses["total"].backward()
    assert calls == [4, 4, 2]  # never again during the steps
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for m in model.lower_modules for p in m.parameters())  # lower blocks stay frozen
    strategy.end_stage(strategy.context)
    assert strategy.targets is None and strategy.latents is None


def upper_of(teacher):
    return type(teacher).upper.__get__(teacher)  # the unwrapped method


def _expected(strategy, model, buffer, seed, targets_fn):
    """Recompute a step by hand: finetune's masks first, then the replay indices from the same generator."""
    gen = torch.Generator().manual_seed(seed)
    mae, _ = model.mae_loss(new_batch()["image"], generator=gen)
    idx = draw_indices(len(buffer), 6, gen)
    z = torch.from_numpy(buffer.data[idx.numpy()]).float()
    return mae, model.upper(z), targets_fn(z)


def test_no_wkd_ablation_is_plain_mse_on_bke_targets():
    model, teacher, strategy, buffer, _ = _setup(wkd="none")
    start(strategy, model, replay=buffer, teacher=teacher, seed=3)
    losses = strategy.observe(new_batch())
    mae, student, target = _expected(strategy, model, buffer, 3, lambda z: bke(upper_of(teacher)(z), 0.5, 0.1))
    assert torch.equal(losses["mae"], mae)
    assert torch.allclose(losses["wkd"], F.mse_loss(student, target), rtol=1e-5, atol=1e-7)
    assert torch.allclose(losses["total"], losses["mae"] + losses["wkd"])


def test_gaussian_wkd_without_bke_matches_wkd_loss_on_raw_targets():
    model, teacher, strategy, buffer, _ = _setup(bke=False, lambda_wkd=0.5)
    start(strategy, model, replay=buffer, teacher=teacher, seed=3)
    losses = strategy.observe(new_batch())
    _, student, target = _expected(strategy, model, buffer, 3, upper_of(teacher))
    assert torch.allclose(losses["wkd"], wkd_loss(student, target, "gaussian"), rtol=1e-5, atol=1e-7)
    assert torch.allclose(losses["total"], losses["mae"] + 0.5 * losses["wkd"])


@pytest.mark.parametrize("wkd", ["gaussian", "none"])
def test_bke_changes_the_targets(wkd):
    values = []
    for use_bke in (False, True):
        model, teacher, strategy, buffer, _ = _setup(wkd=wkd, bke=use_bke)
        start(strategy, model, replay=buffer, teacher=teacher, seed=3)
        values.append(float(strategy.observe(new_batch())["wkd"].detach()))
    assert values[0] != pytest.approx(values[1], rel=1e-4)


def test_other_wkd_modes_and_options_run():
    for wkd, options in (("sliced", {"n_projections": 8}), ("ot", {})):
        model, teacher, strategy, buffer, _ = _setup(wkd=wkd, wkd_options=options)
        start(strategy, model, replay=buffer, teacher=teacher)
        loss = strategy.observe(new_batch())["wkd"]
        assert torch.isfinite(loss) and loss.requires_grad


def test_no_replay_ablation_is_finetune_with_a_zero_wkd_term_and_no_teacher_call():
    model, teacher, strategy, buffer, calls = _setup(replay=False)
    start(strategy, model, replay=buffer, teacher=teacher, seed=2)
    losses = strategy.observe(new_batch())
    reference = FinetuneStrategy()
    start(reference, model, seed=2)
    assert torch.equal(losses["total"], reference.observe(new_batch())["total"])
    assert float(losses["wkd"]) == 0.0 and calls == [] and strategy.targets is None
    assert strategy.freeze_lower_after_first  # the ablation still freezes the lower blocks


@pytest.mark.parametrize(
    ("name", "options", "kept"),
    [
        ("latent_replay", {}, "latent"),
        ("latent_replay", {"replay": False}, "none"),  # no replay: nothing stored, no bytes charged
        ("latent_replay", {"wkd": "none"}, "latent"),
        ("finetune", {}, "none"),
        ("er", {}, "image"),
        ("der", {}, "image"),
    ],
)
def test_export_keeps_a_buffer_only_when_the_options_replay_it(name, options, kept):
    assert build_strategy(name, options).kept_buffer_kind == kept


def test_unfrozen_lower_with_replay_warns_unless_asked_for():
    model = micro_model()
    teacher = teacher_of(model)
    buffer = latent_buffer(model, 4)
    with pytest.warns(UserWarning, match="stale"):
        start(build_strategy("latent_replay"), model, replay=buffer, teacher=teacher)
    strategy = build_strategy("latent_replay", {"unfreeze_lower": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # accepted staleness: no warning
        start(strategy, model, replay=buffer, teacher=teacher)
    losses = strategy.observe(new_batch())
    losses["total"].backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None  # lower blocks train with the option


def test_decoder_distillation_is_off_by_default_and_its_term_is_zero():
    model, teacher, strategy, buffer, _ = _setup()
    start(strategy, model, replay=buffer, teacher=teacher, seed=3)
    losses = strategy.observe(new_batch())
    assert float(losses["decoder"]) == 0.0 and strategy.keep is None and strategy.decoded is None
    assert torch.allclose(losses["total"], losses["mae"] + losses["wkd"])


def test_decoder_distillation_matches_the_teachers_decoder_on_each_rows_fixed_mask():
    model, teacher, strategy, buffer, _ = _setup(lambda_decoder=0.5)
    start(strategy, model, replay=buffer, teacher=teacher, seed=3, stage_index=1)
    n, patches = len(buffer), model.config.num_patches
    keep = strategy.keep
    assert keep.shape == (n, keep_count(patches, model.config.mask_ratio))
    assert (keep.diff(dim=1) > 0).all()  # sorted, no repeats: a mask per row
    z = torch.from_numpy(buffer.data).float()
    visible = torch.gather(z, 1, keep.unsqueeze(-1).expand(-1, -1, z.shape[-1]))
    with torch.no_grad():  # an independent recomputation with the teacher's own methods
        expected_cache = teacher.decode(upper_of(teacher)(visible), keep)
    assert torch.allclose(strategy.decoded, expected_cache, atol=1e-6)

    losses = strategy.observe(new_batch())
    gen = torch.Generator().manual_seed(3)
    model.mae_loss(new_batch()["image"], generator=gen)  # the step's masks come first, as in _expected
    idx = draw_indices(n, 6, gen)
    pred = model.decode(model.upper(visible[idx]), keep[idx])
    mask = torch.ones(len(idx), patches)
    mask.scatter_(1, keep[idx], 0.0)
    per_patch = (pred - expected_cache[idx]).square().mean(dim=-1)
    expected = (per_patch * mask).sum() / mask.sum()
    assert torch.allclose(losses["decoder"], expected, rtol=1e-5, atol=1e-7) and float(expected.detach()) > 0
    assert torch.allclose(losses["total"], losses["mae"] + losses["wkd"] + 0.5 * losses["decoder"])
    losses["total"].backward()
    assert model.decoder_pred.weight.grad is not None and model.mask_token.grad is not None

    again = build_strategy("latent_replay", {"replay_batch_size": 6, "lambda_decoder": 0.5})
    start(again, model, replay=buffer, teacher=teacher, stage_index=1)
    assert torch.equal(again.keep, keep)  # seeded by the stage: a resumed stage distils the same pairs
    start(again, model, replay=buffer, teacher=teacher, stage_index=2)
    assert not torch.equal(again.keep, keep)
    strategy.end_stage(strategy.context)
    assert strategy.keep is None and strategy.decoded is None


def test_decoder_distillation_of_an_unchanged_model_is_zero():
    model = micro_model()
    model.freeze_lower()
    teacher = teacher_of(model, noise=0.0)
    strategy = build_strategy("latent_replay", {"replay_batch_size": 6, "lambda_decoder": 1.0})
    start(strategy, model, replay=latent_buffer(model, 8), teacher=teacher)
    assert float(strategy.observe(new_batch())["decoder"]) == pytest.approx(0.0, abs=1e-10)


def test_decoder_distillation_refuses_pooled_latents_with_the_key_to_change():
    model, teacher, strategy, buffer, _ = _setup(lambda_decoder=1.0)
    pooled = type(buffer)("latent", buffer.data[:, ::2], buffer.stage, buffer.window)  # fewer tokens than patches
    with pytest.raises(ValueError, match=r"lambda_decoder: 0 or another buffer mode"):
        start(strategy, model, replay=pooled, teacher=teacher)


@pytest.mark.parametrize("bad", [-1.0, "1", True])
def test_lambda_decoder_must_be_a_nonnegative_number(bad):
    with pytest.raises(ValueError, match="lambda_decoder"):
        build_strategy("latent_replay", {"lambda_decoder": bad})
