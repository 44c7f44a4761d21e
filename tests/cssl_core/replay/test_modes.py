"""One object per buffer privacy mode: the registry, and what each mode tells export, replay, the attacker and
training (the answers that were if-chains on the mode's name in release.py and tasks/privacy_audit.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cssl_core.replay.modes import BUFFER_MODES, buffer_mode
from cssl_core.replay.release import MODES, ReleaseConfig, release
from cssl_core.strategies import build_strategy
from cssl_core.strategies.nopeek_penalty import NoPeekPenalty, with_privacy_penalty

MODES_DIR = Path(__file__).resolve().parents[3] / "cssl_core" / "replay" / "modes"


def test_every_mode_is_one_file_named_after_it_and_the_registry_is_what_params_accept():
    assert MODES == tuple(BUFFER_MODES) == ("none", "noise", "pool", "aggregate", "adversarial", "dp")
    for name, mode in BUFFER_MODES.items():
        assert mode.name == name
        assert Path(__import__(mode.__module__, fromlist=["_"]).__file__) == MODES_DIR / f"{name}.py"
    with pytest.raises(ValueError, match=r"^replay.privacy.mode must be one of none, noise, pool, aggregate, "):
        ReleaseConfig(mode="dp-typo")


def test_what_each_mode_tells_the_attacker_replay_and_training():
    knobs = dict(noise_sd=0.3, pool=4, adversarial_weight=2.5)
    views = {name: ReleaseConfig(mode=name, **knobs) for name in MODES}
    assert {n: c.token_pool for n, c in views.items()} == {**dict.fromkeys(MODES, 1), "pool": 4}
    assert {n: c.attacker_noise_sd for n, c in views.items()} == {**dict.fromkeys(MODES, 0.0), "noise": 0.3}
    assert {n: c.training_penalty_weight for n, c in views.items()} == {**dict.fromkeys(MODES), "adversarial": 2.5}
    assert [n for n in MODES if buffer_mode(n).stores_clusters] == ["aggregate", "dp"]
    assert [n for n in MODES if buffer_mode(n).releases_all_candidates] == ["dp"]  # the selection looks at data
    for name, config in views.items():
        wrapped = with_privacy_penalty(build_strategy("finetune"), config)
        assert isinstance(wrapped, NoPeekPenalty) == (name == "adversarial")
    raw_block = {"mode": "adversarial"}
    assert isinstance(with_privacy_penalty(build_strategy("finetune"), raw_block), NoPeekPenalty)


def test_each_mode_releases_what_it_says_it_stores():
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((24, 16, 8)).astype(np.float32)
    patients = np.repeat(np.arange(6), 4)
    out = {n: release(latents, patients, ReleaseConfig(mode=n, min_cluster_size=8, min_patients=2), 1) for n in MODES}
    for name in ("none", "adversarial"):
        np.testing.assert_array_equal(out[name].latents, latents.astype(np.float16))
    assert out["pool"].latents.shape == (24, 4, 8)  # 4x4 grid pooled 2x2
    assert not np.allclose(out["noise"].latents, latents, atol=1e-2)
    assert out["aggregate"].counts.sum() == 24 and out["aggregate"].spread is not None
    assert all(out[n].spread is None and len(out[n].members) == 24 for n in MODES if n not in ("aggregate", "dp"))
    assert out["dp"].accounting["epsilon"] <= 8.0 and out["dp"].counts.shape == (1,)
