from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.strategies import STRATEGIES, FinetuneStrategy, build_strategy
from cssl_core.strategies.medcoss import intra_window_mixup, intra_window_partners
from tests.cssl_core.strategies.helpers import (
    buffer_for,
    image_buffer,
    micro_model,
    new_batch,
    start,
    teacher_of,
)

REPLAY = ["joint", "er", "der", "medcoss", "latent_replay"]
TERMS = {
    "joint": {"mae", "mae_replay", "total"},
    "er": {"mae", "mae_replay", "total"},
    "der": {"mae", "mae_replay", "feature_match", "total"},
    "medcoss": {"mae", "distill", "total"},
    "latent_replay": {"mae", "wkd", "decoder", "total"},
}
OPTIONAL_TERMS = {"latent_replay": {"lambda_decoder": 1.0}}  # options that switch a term on (zero by default)


def test_class_attributes_declare_privacy_buffers_and_runner_needs():
    expected = {
        # name: (keeps_raw_images, buffer_kind, buffer_features, selection, budget, freezes_lower, needs_teacher)
        "finetune": (False, "none", False, None, None, False, False),
        "joint": (True, "image", False, None, 1.0, False, False),
        "er": (True, "image", False, None, None, False, False),
        "der": (True, "image", True, None, None, False, False),
        "medcoss": (True, "image", False, "kmeans", None, False, True),
        "latent_replay": (False, "latent", False, None, None, True, True),
    }
    assert set(STRATEGIES) == set(expected)
    for name, values in expected.items():
        cls = STRATEGIES[name]
        got = tuple(
            getattr(cls, a)
            for a in (
                "keeps_raw_images",
                "buffer_kind",
                "buffer_features",
                "buffer_selection",
                "buffer_budget",
                "freezes_lower",
                "needs_teacher",
            )
        )
        assert got == values, name
        assert cls.keeps_raw_images == (cls.buffer_kind == "image")  # what a buffer's meta.json will say
    assert build_strategy("latent_replay").freeze_lower_after_first is True
    assert build_strategy("latent_replay", {"unfreeze_lower": True}).freeze_lower_after_first is False
    assert build_strategy("er").freeze_lower_after_first is False


@pytest.mark.parametrize(
    "name, options",
    [
        ("er", {"replay_batch_size": 0}),
        ("er", {"replay_batch_size": 2.5}),
        ("der", {"alpha": -1}),
        ("medcoss", {"lambda_distill": "x"}),
        ("joint", {"max_replay_batch": 0}),
        ("latent_replay", {"wkd": "kl"}),
        ("latent_replay", {"wkd": "gaussian", "wkd_options": {"epsilon": 1}}),
        ("latent_replay", {"wkd": "none", "wkd_options": {"eps": 1e-6}}),
        ("latent_replay", {"bke_omega": 1.0}),
        ("latent_replay", {"bke_tau": 0}),
        ("latent_replay", {"replay": "no"}),
    ],
)
def test_bad_option_values_fail_at_construction(name, options):
    with pytest.raises(ValueError):
        build_strategy(name, options)


@pytest.mark.parametrize("name", REPLAY)
def test_stage_one_is_finetune_with_zero_replay_terms(name):
    batch = new_batch()
    reference = FinetuneStrategy()
    model = micro_model()
    start(reference, model, seed=5)
    expected = reference.observe(batch)["total"]

    strategy = build_strategy(name)
    start(strategy, model, replay=None, teacher=None, seed=5)
    losses = strategy.observe(batch)
    assert set(losses) == TERMS[name]
    assert torch.equal(losses["total"], expected) and torch.equal(losses["mae"], expected)
    for term in TERMS[name] - {"mae", "total"}:
        assert float(losses[term]) == 0.0
    # an empty list of earlier buffers is also "nothing to replay"
    start(strategy, model, replay=[], seed=5)
    assert torch.equal(strategy.observe(batch)["total"], expected)


@pytest.mark.parametrize("name", REPLAY)
def test_stage_two_terms_are_finite_and_replay_terms_reach_the_model(name):
    model = micro_model()
    strategy = build_strategy(name, {"replay_batch_size": 6, **OPTIONAL_TERMS.get(name, {})})
    if strategy.freeze_lower_after_first:
        model.freeze_lower()
    teacher = teacher_of(model) if strategy.needs_teacher else None
    start(strategy, model, replay=buffer_for(strategy, model), teacher=teacher, seed=1)
    losses = strategy.observe(new_batch())
    assert set(losses) == TERMS[name]
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    replay_terms = TERMS[name] - {"mae", "total"}
    assert all(float(losses[t].detach()) > 0 for t in replay_terms)

    replay_only = sum(losses[t] for t in replay_terms)
    replay_only.backward(retain_graph=True)
    upper = model.blocks[-1].mlp.linear1.weight
    assert upper.grad is not None and float(upper.grad.abs().sum()) > 0
    model.zero_grad(set_to_none=True)
    losses["total"].backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad and "cross_attn" not in n]
    assert all(p.grad is not None for _, p in trained)  # (MONAI blocks carry unused cross-attention norms)
    assert any(n.startswith("blocks.0.") for n, _ in trained) != strategy.freeze_lower_after_first
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters())
    strategy.end_stage(strategy.context)
    assert strategy.state_dict() == {}


@pytest.mark.parametrize("name", REPLAY)
def test_a_replay_step_is_deterministic_given_the_generator_seed(name):
    model = micro_model()
    strategy = build_strategy(name, {"replay_batch_size": 6})
    if strategy.freeze_lower_after_first:
        model.freeze_lower()
    teacher = teacher_of(model) if strategy.needs_teacher else None
    buffer = buffer_for(strategy, model)
    totals = []
    for _ in range(2):
        start(strategy, model, replay=buffer, teacher=teacher, seed=9)
        totals.append(strategy.observe(new_batch())["total"])
    assert torch.equal(totals[0], totals[1])


def test_wrong_buffer_kind_or_missing_teacher_or_features_are_errors():
    model = micro_model()
    with pytest.raises(ValueError, match="replays a 'image' buffer"):
        start(build_strategy("er"), model, replay=buffer_for(build_strategy("latent_replay"), model))
    with pytest.raises(ValueError, match="needs context.teacher"):
        start(build_strategy("medcoss"), model, replay=image_buffer(4))
    with pytest.raises(ValueError, match="stored features"):
        start(build_strategy("der"), model, replay=image_buffer(4))


# -- der -------------------------------------------------------------------------------------------------
def test_der_feature_match_vanishes_when_stored_features_are_the_models():
    model = micro_model()
    strategy = build_strategy("der")
    start(strategy, model, replay=image_buffer(8, model=model))  # features = this very model's pooled output
    losses = strategy.observe(new_batch())
    assert float(losses["feature_match"].detach()) < 1e-5  # float16 storage rounding only
    expected = losses["mae"] + 1.0 * losses["mae_replay"] + 0.5 * losses["feature_match"]
    assert torch.allclose(losses["total"], expected)

    start(strategy, model, replay=image_buffer(8, model=micro_model(seed=3)))  # another model's features
    assert float(strategy.observe(new_batch())["feature_match"].detach()) > 1e-3


# -- medcoss ---------------------------------------------------------------------------------------------
def test_intra_window_partners_share_a_window_and_differ_from_self():
    windows = np.array(["lung", "med", "lung", "med", "lung", "bone"])
    partner = intra_window_partners(windows, torch.Generator().manual_seed(0))
    assert all(windows[int(p)] == windows[i] for i, p in enumerate(partner))
    assert all(int(partner[i]) != i for i in range(5)) and int(partner[5]) == 5  # bone is alone
    assert sorted(partner.tolist()) == list(range(6))  # every image is used as a partner once
    again = intra_window_partners(windows, torch.Generator().manual_seed(0))
    assert torch.equal(partner, again)


def test_mixup_weights_are_uniform_per_pair():
    images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    mixed, partner, lam = intra_window_mixup(images, np.array(["a", "a"]), torch.Generator().manual_seed(2))
    assert partner.tolist() == [1, 0] and ((lam > 0) & (lam < 1)).all()
    assert torch.allclose(mixed[0], (1 - lam[0]).expand(1, 4, 4)) and torch.allclose(mixed[1], lam[1].expand(1, 4, 4))


def test_medcoss_mixes_within_windows_distils_and_has_no_pretext_loss_on_the_buffer():
    model = micro_model()
    n = 12
    data = np.where(np.arange(n)[:, None, None] % 2 == 0, 0, 255).astype(np.uint8) * np.ones((1, 32, 32), np.uint8)
    window = np.array(["lung" if i % 2 == 0 else "mediastinal" for i in range(n)])
    buffer = ReplayBuffer("image", data, np.full(n, "s1"), window)  # lung slices all black, mediastinal all white
    teacher = teacher_of(model)
    seen: list[torch.Tensor] = []
    encode = teacher.encode
    teacher.encode = lambda x: (seen.append(x.detach().clone()), encode(x))[1]

    strategy = build_strategy("medcoss", {"replay_batch_size": 10, "lambda_distill": 2.0})
    start(strategy, model, replay=buffer, teacher=teacher, seed=4)
    losses = strategy.observe(new_batch())
    (mixed,) = seen
    per_image = mixed.flatten(1)
    # a cross-window pair would give a grey image; within-window mixes of constant images stay 0 or 1
    assert torch.all((per_image == 0).all(1) | (per_image == 1).all(1))

    reference = FinetuneStrategy()
    start(reference, model, seed=4)
    assert torch.equal(losses["mae"], reference.observe(new_batch())["mae"])  # no MAE on the buffer
    assert torch.allclose(losses["total"], losses["mae"] + 2.0 * losses["distill"])
    assert float(losses["distill"].detach()) > 0


# -- joint -----------------------------------------------------------------------------------------------
def test_joint_replay_batch_is_proportional_to_the_buffer_and_capped():
    model = micro_model()
    two_stages = image_buffer(12)
    two_stages.stage[6:] = "s2"
    strategy = build_strategy("joint")
    start(strategy, model, replay=two_stages)
    assert strategy.replay_batch_size(4) == 8  # unknown new-stage size: as large as an average earlier stage
    strategy = build_strategy("joint", {"new_stage_size": 24})
    start(strategy, model, replay=two_stages)
    assert strategy.replay_batch_size(4) == 2  # 12 buffered / 24 new * 4
    strategy = build_strategy("joint", {"new_stage_size": 3, "max_replay_batch": 10})
    start(strategy, model, replay=two_stages)
    assert strategy.replay_batch_size(4) == 10  # 16, capped
    strategy = build_strategy("joint", {"replay_batch_size": 5})
    start(strategy, model, replay=two_stages)
    assert strategy.replay_batch_size(4) == 5
