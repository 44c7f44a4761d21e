from __future__ import annotations

import math

import pytest
import torch

from cssl_core.train import TrainConfig, WarmupCosine, build_optimizer, warmup_cosine
from tests.cssl_core.train.fixtures import micro_model


def test_warmup_then_cosine_at_known_steps():
    f = WarmupCosine(warmup_steps=10, total_steps=110, final_ratio=0.1)
    assert f(0) == pytest.approx(0.1)  # the first step already moves
    assert f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)  # cosine starts at the peak
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert WarmupCosine(0, 5)(0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        WarmupCosine(10, 5)


def test_lambda_lr_follows_the_factor_and_round_trips():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])
    other = warmup_cosine(torch.optim.SGD([param], lr=2.0), 4, 20)
    other.load_state_dict(sched.state_dict())
    assert other.get_last_lr() == sched.get_last_lr()


def test_no_weight_decay_on_norms_biases_embeddings_and_frozen_params():
    model = micro_model()
    model.freeze_lower()
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in opt.param_groups[0]["params"]}
    no_decay = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[1]["weight_decay"] == 0.0
    assert "blocks.1.mlp.linear1.weight" in decay and "decoder_pred.weight" in decay
    assert {"norm.weight", "norm.bias", "blocks.1.norm1.weight", "mask_token", "decoder_pred.bias"} <= no_decay
    assert not any(n.startswith(("patch_embedding", "blocks.0.")) for n in decay | no_decay)  # frozen lower
    assert not any("pos" in n for n in decay)


def test_train_config_validation():
    with pytest.raises(KeyError, match="unknown training config"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 1e-3})
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    config = TrainConfig.from_dict({"epochs": 2, "betas": [0.9, 0.99]})
    assert config.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert "device" not in config.fingerprint()
