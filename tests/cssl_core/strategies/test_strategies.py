from __future__ import annotations

import pytest
import torch

from cssl_core.strategies import STRATEGIES, FinetuneStrategy, StageContext, Strategy, build_strategy
from tests.cssl_core.train.fixtures import micro_model, structured_images


def test_registry_names_match_and_declare_privacy():
    for name, cls in STRATEGIES.items():
        assert issubclass(cls, Strategy) and cls.name == name
        assert isinstance(cls.keeps_raw_images, bool)
        assert isinstance(cls.required_options, tuple)
    assert STRATEGIES["finetune"].keeps_raw_images is False
    with pytest.raises(KeyError, match="unknown strategy"):
        build_strategy("nope")


class _Needs(Strategy):
    name = "needs"
    required_options = ("lambda_wkd",)
    default_options = {"tau": 0.1}


def test_options_are_validated_like_solo_learn():
    with pytest.raises(ValueError, match=r"missing required option\(s\) \['lambda_wkd'\]"):
        _Needs({})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lamda_wkd'\]"):
        _Needs({"lambda_wkd": 1.0, "lamda_wkd": 1.0})
    assert _Needs({"lambda_wkd": 2.0}).options == {"lambda_wkd": 2.0, "tau": 0.1}
    with pytest.raises(ValueError, match="unknown option"):
        build_strategy("finetune", {"mask_ratio": 0.75, "lr": 1})


def test_finetune_observe_returns_the_mae_loss():
    strategy = FinetuneStrategy({"mask_ratio": 0.5})
    with pytest.raises(RuntimeError, match="begin_stage"):
        strategy.observe({})
    model = micro_model()
    context = StageContext(0, "s1", model, generator=torch.Generator().manual_seed(0))
    strategy.begin_stage(context)
    images = torch.from_numpy(structured_images(4, 32)).unsqueeze(1)
    losses = strategy.observe({"image": images, "row": torch.arange(4)})
    assert set(losses) == {"mae", "total"} and losses["total"] is losses["mae"]
    expected, details = model.mae_loss(images, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(losses["total"], expected)
    assert int(details.mask.sum(1)[0]) == 8
    losses["total"].backward()
    strategy.end_stage(context)
    assert strategy.state_dict() == {}
