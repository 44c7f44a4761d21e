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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt", "last.pt", "prev.pt"]
    latest = load_latest(tmp_path)
    assert latest["epoch"] == 2 and torch.equal(latest["model"]["w"], torch.full((3,), 2.0))
    save_checkpoint(tmp_path, _state(3))
    assert torch.load(tmp_path / "prev.pt", weights_only=True)["epoch"] == 2  # rotated: the one before last


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


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_last_is_moved_aside_and_prev_resumes(tmp_path, capsys):
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    damaged = (tmp_path / "last.pt").read_bytes()[:500]
    (tmp_path / "last.pt").write_bytes(damaged)  # a real checkpoint, cut short (full disk, interrupted copy)
    state = load_latest(tmp_path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.full((3,), 1.0))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: checkpoint {tmp_path / 'last.pt'} does not load (")
    assert lines[0].endswith("moved aside to last.pt.corrupt-1; resuming from prev.pt (epoch 1)")
    assert (tmp_path / "last.pt.corrupt-1").read_bytes() == damaged  # kept, byte for byte
    assert not (tmp_path / "last.pt").exists()
    # the next save does not rotate the good prev.pt away before a new last.pt exists
    save_checkpoint(tmp_path, _state(2))
    assert load_latest(tmp_path)["epoch"] == 2 and torch.load(tmp_path / "prev.pt", weights_only=True)["epoch"] == 1


def test_nothing_loadable_means_a_fresh_start_with_every_file_kept(tmp_path):
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    (tmp_path / "last.pt.corrupt-1").write_bytes(b"from an earlier incident")
    _truncate(tmp_path / "last.pt")
    (tmp_path / "prev.pt").write_bytes(b"")
    warnings = []
    assert load_latest(tmp_path, warn=warnings.append) is None
    assert len(warnings) == 2 and "last.pt.corrupt-2" in warnings[0] and "prev.pt.corrupt-1" in warnings[1]
    assert "EOFError" in warnings[1] and warnings[1].endswith("training from the start")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt.corrupt-1", "last.pt.corrupt-2", "prev.pt.corrupt-1"]
    assert load_latest(tmp_path, warn=warnings.append) is None and len(warnings) == 2  # nothing left to warn about


def test_the_newest_good_file_wins_among_prev_and_epoch_files(tmp_path):
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, _state(epoch), keep_epoch=True)
    _truncate(tmp_path / "last.pt")
    warnings = []
    assert load_latest(tmp_path, warn=warnings.append)["epoch"] == 3  # epoch-0003.pt is newer than prev.pt
    assert warnings[-1].endswith("resuming from epoch-0003.pt (epoch 3)")
    _truncate(tmp_path / "epoch-0003.pt", keep=0.9)
    assert load_latest(tmp_path, warn=warnings.append)["epoch"] == 2
    assert warnings[-1].endswith("resuming from prev.pt (epoch 2)")
    atomic_save({"something": 1}, tmp_path / "prev.pt")
    assert load_latest(tmp_path, warn=warnings.append)["epoch"] == 2  # epoch-0002.pt
    assert "not a cssl-train-checkpoint" in warnings[-1]


def test_a_crash_between_the_two_renames_resumes_from_prev_silently(tmp_path):
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    (tmp_path / "last.pt").unlink()  # what a kill right after `last -> prev` leaves
    warnings = []
    assert load_latest(tmp_path, warn=warnings.append)["epoch"] == 1 and warnings == []


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path, _state(1))
    expected = (random.random(), np.random.normal(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_latest(tmp_path)["rng"])
    actual = (random.random(), np.random.normal(), torch.rand(2))
    assert expected[0] == actual[0] and expected[1] == actual[1] and torch.equal(expected[2], actual[2])
