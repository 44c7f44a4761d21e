"""Every registered strategy through two real `train_stage` calls, the way the stage runner chains them."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from cssl_core.data import WindowedSlices, make_loader
from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.strategies import STRATEGIES, build_strategy
from cssl_core.train import TrainConfig, train_stage
from tests.cssl_core.strategies.helpers import micro_model
from tests.cssl_core.train.fixtures import write_windowed

N = 16
CONFIG = dict(lr=1e-3, seed=0, device="cpu", warmup_epochs=0.5)
# every optional replay term switched on, so each one is trained, checked > 0 and resumed bit-identically
OPTIONS = {"latent_replay": {"lambda_decoder": 1.0}}


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("stages")
    return write_windowed(root / "a-mediastinal", n=N, seed=0), write_windowed(root / "b-lung", n=N, seed=1)


def _loaders(root):
    return {"train": make_loader(WindowedSlices(root), 8, 0, seed=0)}


def _export(strategy, model, root) -> ReplayBuffer | None:
    """What export@1 would write for this strategy (selection: the first rows, or all for a forced 1.0)."""
    if strategy.buffer_kind == "none":
        return None
    n = N if strategy.buffer_budget == 1.0 else 6
    slices = np.load(root / "slices.npy")[:n]
    images = torch.from_numpy(slices).float().div(255).unsqueeze(1)
    model.eval()
    with torch.no_grad():
        if strategy.buffer_kind == "latent":
            data, features = model.lower(images).half().numpy(), None
        else:
            data = slices
            features = model.pooled(images).half().numpy() if strategy.buffer_features else None
    model.train()
    return ReplayBuffer(strategy.buffer_kind, data, np.full(n, "s1"), np.full(n, "mediastinal"), features=features)


def _stage_one(name, stages, tmp_path):
    model = micro_model()
    strategy = build_strategy(name, OPTIONS.get(name))
    result = train_stage(model, strategy, _loaders(stages[0]), TrainConfig(epochs=1, **CONFIG), tmp_path / "s1")
    return model, strategy, result


def _stage_two_inputs(name, model, stages):
    """Runner side of stage 2: freeze if the strategy says so, snapshot the teacher, load the buffer."""
    strategy = build_strategy(name, OPTIONS.get(name))
    buffer = _export(strategy, model, stages[0])
    model = copy.deepcopy(model)
    if strategy.freeze_lower_after_first:
        model.freeze_lower()
    teacher = copy.deepcopy(model).requires_grad_(False) if strategy.needs_teacher else None
    return model, strategy, teacher, buffer


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_two_stages_finish_with_finite_losses_and_stable_metric_names(name, stages, tmp_path):
    model, _, first = _stage_one(name, stages, tmp_path)
    model, strategy, teacher, buffer = _stage_two_inputs(name, model, stages)
    second = train_stage(
        model,
        strategy,
        _loaders(stages[1]),
        TrainConfig(epochs=2, **CONFIG),
        tmp_path / "s2",
        stage_index=1,
        stage_name="s2",
        teacher=teacher,
        replay=buffer,
    )
    history = first.history + second.history
    assert all(math.isfinite(v) for metrics in history for v in metrics.values())
    names = {k for k in history[0] if k.startswith("loss/")}
    assert all({k for k in m if k.startswith("loss/")} == names for m in history)
    if buffer is not None:
        replay_terms = names - {"loss/mae", "loss/total"}
        assert all(second.history[-1][t] > 0 for t in replay_terms)


class _Crash(RuntimeError):
    pass


def _crash_after_first_epoch(epoch, metrics):
    if epoch == 0:
        raise _Crash


@pytest.mark.parametrize("name", ["joint", "er", "der", "medcoss", "latent_replay"])
def test_a_crashed_replay_stage_resumes_bit_identically(name, stages, tmp_path):
    stage_one_model, _, _ = _stage_one(name, stages, tmp_path)
    config = TrainConfig(epochs=2, **CONFIG)
    finals = []
    for run, crash in (("straight", False), ("crashed", True)):
        model, strategy, teacher, buffer = _stage_two_inputs(name, stage_one_model, stages)
        kwargs = dict(stage_index=1, teacher=teacher, replay=buffer)
        out = tmp_path / run
        if crash:
            with pytest.raises(_Crash):
                train_stage(model, strategy, _loaders(stages[1]), config, out, _crash_after_first_epoch, **kwargs)
            model, strategy, teacher, buffer = _stage_two_inputs(name, stage_one_model, stages)
            kwargs = dict(stage_index=1, teacher=teacher, replay=buffer)
        result = train_stage(model, strategy, _loaders(stages[1]), config, out, **kwargs)
        assert result.resumed_from == (1 if crash else None)
        finals.append(model.state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
