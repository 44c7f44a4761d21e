"""cssl_core/replay/directory.py: a stage's buffer directory, accumulated across stages, or one that says "none"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.replay.directory import NO_BUFFER, read_buffer, write_buffer, write_no_buffer


def _latents(n: int, stage: str, seed: int) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, 4, 8)).astype(np.float16)
    return ReplayBuffer("latent", data, stage=np.array([stage] * n), window=np.array(["lung"] * n))


def test_no_buffer_is_a_directory_that_reads_as_none(tmp_path):
    target = tmp_path / "buffers" / "init"
    target.mkdir(parents=True)
    (target / "stale.npy").write_bytes(b"old")
    assert write_no_buffer(target) == 0
    assert [p.name for p in target.iterdir()] == ["meta.json"]
    assert json.loads((target / "meta.json").read_text()) == NO_BUFFER
    assert read_buffer(target) is None


def test_write_buffer_carries_the_earlier_stages_forward(tmp_path):
    first, second = _latents(3, "s1", 0), _latents(2, "s2", 1)
    nbytes = write_buffer(tmp_path / "s1", None, first)
    assert nbytes > 0
    earlier = read_buffer(tmp_path / "s1", mmap=False)
    assert np.array_equal(earlier.data, first.data)
    write_buffer(tmp_path / "s2", earlier, second)
    both = read_buffer(tmp_path / "s2", mmap=False)
    assert list(both.stage) == ["s1"] * 3 + ["s2"] * 2
    assert np.array_equal(both.data, np.concatenate([first.data, second.data]))


def test_nothing_to_keep_writes_no_buffer_over_an_old_one(tmp_path):
    write_buffer(tmp_path / "s1", None, _latents(3, "s1", 0))
    assert write_buffer(tmp_path / "s1", None, _latents(0, "s1", 0)) == 0
    assert read_buffer(tmp_path / "s1") is None


def test_a_directory_without_meta_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a replay buffer .no meta.json.; run the export stage first"):
        read_buffer(tmp_path)
