from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from cssl_core.train import load_latest, save_checkpoint
from cssl_core.train.checkpoint import atomic_save, rng_state, set_rng_state


def _state(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.full((3,), float(epoch))}, "rng": rng_state(), "history": []}


def test_save_is_atomic_and_latest_wins(tmp_path):
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "absent") is None
    save_checkpoint(tmp_path, _state(1), keep_epoch=True)
    save_checkpoint(tmp_path, _state(2), keep_epoch=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt", "last.pt"]
    latest = load_latest(tmp_path)
    assert latest["epoch"] == 2 and torch.equal(latest["model"]["w"], torch.full((3,), 2.0))


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, _state(1))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, _state(2))
    monkeypatch.undo()
    assert load_latest(tmp_path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_damaged_last_falls_back_to_an_epoch_file(tmp_path):
    save_checkpoint(tmp_path, _state(3), keep_epoch=True)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    assert load_latest(tmp_path)["epoch"] == 3
    (tmp_path / "epoch-0003.pt").unlink()
    with pytest.raises(RuntimeError, match="no loadable checkpoint"):
        load_latest(tmp_path)
    atomic_save({"something": 1}, tmp_path / "last.pt")
    with pytest.raises(RuntimeError, match="not a cssl-train-checkpoint"):
        load_latest(tmp_path)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path, _state(1))
    expected = (random.random(), np.random.normal(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_latest(tmp_path)["rng"])
    actual = (random.random(), np.random.normal(), torch.rand(2))
    assert expected[0] == actual[0] and expected[1] == actual[1] and torch.equal(expected[2], actual[2])
