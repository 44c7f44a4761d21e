"""Every registered strategy trains its first stage as plain MAE, bit for bit: the claim behind
Strategy.plain_first_stage, which lets a comparison train stage 1 once per seed and share it."""

from __future__ import annotations

import pytest
import torch

from cssl_core.data import WindowedSlices, make_loader, train_transforms
from cssl_core.strategies.nopeek_penalty import NoPeekPenalty
from cssl_core.strategies.registry import STRATEGIES, build_strategy
from cssl_core.train import TrainConfig, train_stage
from tests.cssl_core.train.fixtures import micro_model, write_windowed


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return write_windowed(tmp_path_factory.mktemp("first") / "synthetic-lung", n=16, size=32)


def _first_stage(data, strategy, root):
    model = micro_model()
    loader = make_loader(WindowedSlices(data, rows=range(16), transform=train_transforms(32)), 8, 0, seed=1)
    result = train_stage(model, strategy, {"train": loader}, TrainConfig(epochs=1, lr=1e-3, seed=1), root)
    return model.state_dict(), result, strategy.state_dict()


def _options(name: str) -> dict | None:
    return {"replay_batch_size": 8} if name in ("er", "der", "medcoss", "latent_replay") else None


@pytest.mark.slow  # seven first stages: ~15-60 s on 2 loaded cores
def test_every_strategy_trains_the_first_stage_as_finetune_does(data, tmp_path):
    reference, reference_run, _ = _first_stage(data, build_strategy("finetune"), tmp_path / "finetune")
    for name in STRATEGIES:
        strategy = build_strategy(name, _options(name))
        assert strategy.plain_first_stage, f"{name} no longer trains plain MAE first: update this test"
        weights, run, state = _first_stage(data, strategy, tmp_path / name)
        assert all(torch.equal(weights[key], reference[key]) for key in reference), name
        assert state == {}  # nothing of the strategy's own would be lost by taking another's finished run
        assert [h["loss/total"] for h in run.history] == [h["loss/total"] for h in reference_run.history]
        # ... hence one checkpoint key for all of them on a first stage, and their own on later stages
        assert run.checkpoint_dir.name == reference_run.checkpoint_dir.name, name
        assert strategy.training_identity(0) == build_strategy("finetune").training_identity(0)
        assert strategy.training_identity(1)["strategy"] == name


def test_the_nopeek_penalty_keeps_its_own_first_stage(data, tmp_path):
    plain, plain_run, _ = _first_stage(data, build_strategy("finetune"), tmp_path / "plain")
    penalised = NoPeekPenalty(build_strategy("finetune"), 1.0)
    weights, run, _ = _first_stage(data, penalised, tmp_path / "nopeek")
    assert run.checkpoint_dir.name != plain_run.checkpoint_dir.name
    assert not all(torch.equal(weights[key], plain[key]) for key in plain)
    assert penalised.training_identity(0)["strategy"] == "finetune+nopeek"
