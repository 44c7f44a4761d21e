"""NoPeekPenalty: the dCor term while the lower blocks train and nothing once they are frozen, the exact change
of "total", everything else forwarded to the wrapped strategy, the weight in the checkpoint fingerprint, and
penalty-only steps on a tiny MAE lowering dCor."""

from __future__ import annotations

import math

import pytest
import torch

from cssl_core.models import build_mae
from cssl_core.privacy.distance_correlation import distance_correlation
from cssl_core.strategies import build_strategy
from cssl_core.strategies.nopeek_penalty import WEIGHT_OPTION, WEIGHT_PARAM, NoPeekPenalty, with_privacy_penalty
from cssl_core.train import TrainConfig
from cssl_core.train.loop import training_fingerprint
from tests.cssl_core.strategies.helpers import latent_buffer, micro_model, new_batch, start, teacher_of
from tests.cssl_core.train.fixtures import structured_images

torch.set_num_threads(1)


def _losses(strategy, model, seed: int = 0, n: int = 6) -> dict[str, torch.Tensor]:
    start(strategy, model, seed=seed)
    return strategy.observe(new_batch(n))


def test_adds_the_dcor_term_and_exactly_weight_times_it_to_total():
    model = micro_model()
    plain = _losses(build_strategy("finetune"), model)
    penalised = _losses(NoPeekPenalty(build_strategy("finetune"), weight=2.5), model)
    assert set(penalised) == {"mae", "nopeek", "total"}
    assert torch.equal(penalised["mae"], plain["mae"])  # same masks: the penalty draws nothing from the generator
    images = new_batch(6)["image"]
    expected = distance_correlation(images.flatten(1), model.lower(images).flatten(1))
    assert torch.allclose(penalised["nopeek"], expected) and 0.0 < penalised["nopeek"].item() <= 1.0
    assert torch.equal(penalised["total"], plain["total"] + 2.5 * penalised["nopeek"])


def test_the_term_is_float32_under_bfloat16_autocast():
    model = micro_model()
    exact = _losses(NoPeekPenalty(build_strategy("finetune")), model)["nopeek"]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the runner's AMP (CUDA there; CPU autocast is the same path)
        mixed = _losses(NoPeekPenalty(build_strategy("finetune")), model)["nopeek"]
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(exact.item(), abs=5e-3)


def test_penalty_gradient_reaches_the_lower_blocks_only():
    model = micro_model()
    strategy = NoPeekPenalty(build_strategy("finetune"), weight=1.0)
    losses = _losses(strategy, model)
    losses["nopeek"].backward()
    used = [model.patch_embedding.patch_embeddings.weight, *(b.attn.qkv.weight for b in model.blocks[:2])]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in used)
    lower = [p for m in model.lower_modules for p in m.parameters()]
    lower_ids = {id(p) for p in lower}
    assert all(p.grad is None for p in model.parameters() if id(p) not in lower_ids)  # upper, decoder untouched


def test_adds_nothing_once_the_lower_blocks_are_frozen():
    model = micro_model()
    model.freeze_lower()
    plain = _losses(build_strategy("finetune"), model)
    calls: list[int] = []
    lower = model.lower
    model.lower = lambda x: (calls.append(x.shape[0]), lower(x))[1]
    penalised = _losses(NoPeekPenalty(build_strategy("finetune"), weight=3.0), model)
    assert set(penalised) == {"mae", "total"} and torch.equal(penalised["total"], plain["total"])
    assert calls == []  # not even computed: a frozen encoder's latents cannot change


def test_forwards_the_wrapped_strategy_and_keys_the_fingerprint_by_weight():
    inner = build_strategy("latent_replay", {"replay_batch_size": 4})
    wrapped = NoPeekPenalty(inner, weight=0.5)
    assert wrapped.name == "latent_replay+nopeek"
    assert wrapped.options == {**inner.options, WEIGHT_OPTION: 0.5}
    for attribute in (
        "keeps_raw_images",
        "buffer_kind",
        "buffer_features",
        "buffer_selection",
        "buffer_budget",
        "freezes_lower",
        "needs_teacher",
        "freeze_lower_after_first",
        "replays",
        "kept_buffer_kind",
        "default_options",
    ):
        assert getattr(wrapped, attribute) == getattr(inner, attribute), attribute
    assert wrapped.buffer_kind == "latent" and wrapped.freeze_lower_after_first and wrapped.needs_teacher
    assert NoPeekPenalty(build_strategy("er")).keeps_raw_images is True

    # a later latent_replay stage through the wrapper: the inner strategy's buffer, teacher cache and losses
    model = micro_model()
    model.freeze_lower()
    buffer = latent_buffer(model, 8)
    start(wrapped, model, replay=buffer, teacher=teacher_of(model), stage_index=1)
    assert wrapped.context is inner.context and wrapped.latents is inner.latents and inner.latents is not None
    assert set(wrapped.observe(new_batch(4))) == {"mae", "wkd", "decoder", "total"}  # frozen lower: no penalty
    assert wrapped.state_dict() == inner.state_dict()
    wrapped.end_stage(wrapped.context)
    assert inner.latents is None

    config = TrainConfig.from_dict({"epochs": 1})
    prints = [
        training_fingerprint(model, strategy, config, 10)
        for strategy in (inner, wrapped, NoPeekPenalty(build_strategy("latent_replay", {"replay_batch_size": 4}), 1.0))
    ]
    assert len({repr(p) for p in prints}) == 3  # plain, weight 0.5 and weight 1.0 never share a checkpoint


@pytest.mark.parametrize("weight", [0, -1.0, math.nan, math.inf, "1.0", True, None])
def test_rejects_a_weight_that_is_not_a_positive_number(weight):
    with pytest.raises(ValueError, match=rf"{WEIGHT_PARAM} must be a number > 0"):
        NoPeekPenalty(build_strategy("finetune"), weight)


def test_wraps_once():
    with pytest.raises(ValueError, match="wrap it once"):
        NoPeekPenalty(NoPeekPenalty(build_strategy("finetune")))


def test_only_the_adversarial_mode_wraps():
    for privacy in ({}, {"mode": "none"}, {"mode": "noise", "noise_sd": 0.5}, {"mode": "aggregate"}):
        inner = build_strategy("finetune")
        assert with_privacy_penalty(inner, privacy) is inner
    wrapped = with_privacy_penalty(build_strategy("finetune"), {"mode": "adversarial", "adversarial_weight": 0.25})
    assert isinstance(wrapped, NoPeekPenalty) and wrapped.weight == 0.25
    assert with_privacy_penalty(build_strategy("finetune"), {"mode": "adversarial"}).weight == 1.0
    with pytest.raises(ValueError, match=WEIGHT_PARAM):
        with_privacy_penalty(build_strategy("finetune"), {"mode": "adversarial", "adversarial_weight": -2})


def test_penalty_only_steps_lower_dcor_on_a_tiny_mae():
    torch.manual_seed(0)
    model = build_mae("tiny")  # 96 px, patch 16, split at block 2: z is (B, 36, 192)
    strategy = NoPeekPenalty(build_strategy("finetune"), weight=1.0)
    start(strategy, model)
    batch = {"image": torch.from_numpy(structured_images(12, 96, seed=3)).unsqueeze(1)}
    lower = [p for m in model.lower_modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(lower, lr=1e-3, weight_decay=0.0)
    values = []
    for _ in range(4):
        dcor = strategy.observe(batch)["nopeek"]
        values.append(dcor.item())
        optimizer.zero_grad()
        dcor.backward()
        optimizer.step()
    with torch.no_grad():
        values.append(strategy.observe(batch)["nopeek"].item())
    assert values[0] > 0.99  # an untrained encoder's z is close to a linear map of the slice
    assert values[-1] < values[0] - 0.1, values
