"""The buffer privacy modes: what each stores, the aggregate mode's cluster rules, and the synthetic replay rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.replay.release import MODES, ReleaseConfig, aggregate, pool_tokens, release, sample_clusters


def _latents(n: int = 40, grid: int = 4, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, grid * grid, dim)) * np.linspace(0.5, 3.0, dim)).astype(np.float32)


def test_config_defaults_validate_and_name_the_key():
    assert ReleaseConfig.from_dict(None).mode == "none"
    assert set(MODES) == {"none", "noise", "pool", "aggregate", "adversarial", "dp"}
    with pytest.raises(ValueError, match="replay.privacy.mode must be one of"):
        ReleaseConfig.from_dict({"mode": "anonymous"})
    with pytest.raises(ValueError, match=r"replay.privacy: unknown key\(s\) \['nosie_sd'\]"):
        ReleaseConfig.from_dict({"nosie_sd": 0.1})
    for bad in ({"noise_sd": 0}, {"noise_sd": True}, {"pool": 1}, {"pool": 2.0}, {"min_cluster_size": 1},
                {"min_patients": 0}, {"adversarial_weight": -1}):
        with pytest.raises(ValueError, match=f"replay.privacy.{next(iter(bad))}"):
            ReleaseConfig.from_dict(bad)
    assert ReleaseConfig(mode="pool", pool=3).token_pool == 3 and ReleaseConfig(pool=3).token_pool == 1


def test_pool_tokens_averages_blocks_of_the_token_grid():
    z = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    pooled = pool_tokens(z, 2)
    grid = z.reshape(2, 4, 4, 3)
    expected = torch.stack(
        [grid[:, r : r + 2, c : c + 2].mean(dim=(1, 2)) for r in (0, 2) for c in (0, 2)], dim=1
    )
    assert pooled.shape == (2, 4, 3) and torch.allclose(pooled, expected)
    assert pool_tokens(z, 1) is z
    with pytest.raises(ValueError, match="does not divide the 4x4 token grid"):
        pool_tokens(z, 3)


def test_none_and_adversarial_store_the_latents_as_float16():
    z = _latents()
    for mode in ("none", "adversarial"):
        out = release(z, np.zeros(len(z)), ReleaseConfig(mode=mode), seed=0)
        assert out.latents.dtype == np.float16 and np.array_equal(out.latents, z.astype(np.float16))
        assert out.spread is None and out.counts is None
        assert [m.tolist() for m in out.members] == [[i] for i in range(len(z))]


def test_noise_has_the_configured_sd_relative_to_each_channel_and_is_seeded():
    z = _latents(n=400)
    config = ReleaseConfig(mode="noise", noise_sd=0.5)
    out = release(z, np.zeros(len(z)), config, seed=3)
    added = out.latents.astype(np.float32) - z
    ratio = added.std(axis=(0, 1)) / z.std(axis=(0, 1))
    assert np.allclose(ratio, 0.5, atol=0.02)
    assert np.array_equal(release(z, np.zeros(len(z)), config, seed=3).latents, out.latents)
    assert not np.array_equal(release(z, np.zeros(len(z)), config, seed=4).latents, out.latents)


def test_pool_stores_a_quarter_of_the_tokens():
    z = _latents()
    out = release(z, np.zeros(len(z)), ReleaseConfig(mode="pool", pool=2), seed=0)
    assert out.latents.shape == (len(z), 4, z.shape[2])
    assert np.allclose(out.latents, pool_tokens(torch.from_numpy(z), 2).numpy(), atol=1e-2)


def test_aggregate_clusters_meet_both_minimums_and_no_mean_is_an_input():
    z = _latents(n=43)
    patients = np.repeat(np.arange(6), 8)[:43]
    out = release(z, patients, ReleaseConfig(mode="aggregate", min_cluster_size=5, min_patients=2), seed=0)
    members = np.concatenate(out.members)
    assert sorted(members.tolist()) == list(range(43))  # every selected row is in exactly one cluster
    assert len(out.members) > 1
    for group, count in zip(out.members, out.counts, strict=True):
        assert group.size == count >= 5 and len(set(patients[group].tolist())) >= 2
    assert out.spread.shape == out.latents.shape == (len(out.members), *z.shape[1:])
    for i, group in enumerate(out.members):
        assert np.allclose(out.latents[i], z[group].mean(axis=0), atol=1e-2)
        assert np.allclose(out.spread[i], z[group].std(axis=0), atol=1e-2)
    # no stored row lies within epsilon of any input latent: the nearest is far compared to float16 rounding
    stored = out.latents.astype(np.float32).reshape(len(out.latents), -1)
    distance = np.sqrt(((stored[:, None, :] - z.reshape(43, -1)[None]) ** 2).sum(-1))
    epsilon = 0.05 * np.linalg.norm(z.reshape(43, -1), axis=1).mean()
    assert distance.min() > epsilon


def test_aggregate_merges_a_cluster_with_too_few_patients():
    z = _latents(n=24)
    z[:12] += 50.0  # two clear groups: the first 12 rows from patient 0 only
    patients = np.array([0] * 12 + [1] * 6 + [2] * 6)
    out = aggregate(z, patients, min_size=6, min_patients=2, seed=0)
    for group in out.members:
        assert len(set(patients[group].tolist())) >= 2


def test_aggregate_refuses_data_that_cannot_make_one_cluster():
    z = _latents(n=10)
    with pytest.raises(ValueError, match="min_cluster_size=12 .* selected 10 slices from 5 patients"):
        release(z, np.arange(10) % 5, ReleaseConfig(mode="aggregate", min_cluster_size=12, min_patients=2), 0)
    with pytest.raises(ValueError, match="min_patients=3 .* from 2 patients"):
        release(z, np.arange(10) % 2, ReleaseConfig(mode="aggregate", min_cluster_size=4, min_patients=3), 0)


def test_sample_clusters_draws_counts_rows_with_the_stored_mean_and_sd():
    means = np.stack([np.zeros((4, 3)), np.full((4, 3), 5.0)]).astype(np.float16)
    spread = np.stack([np.ones((4, 3)), np.full((4, 3), 0.5)]).astype(np.float16)
    counts = np.array([3000, 2000], dtype=np.int32)
    draws = sample_clusters(means, spread, counts, torch.Generator().manual_seed(0)).float()
    assert draws.shape == (5000, 4, 3) and draws.dtype == torch.float32
    assert abs(draws[:3000].mean().item()) < 0.05 and abs(draws[:3000].std().item() - 1.0) < 0.05
    assert abs(draws[3000:].mean().item() - 5.0) < 0.05 and abs(draws[3000:].std().item() - 0.5) < 0.05
    again = sample_clusters(means, spread, counts, torch.Generator().manual_seed(0)).float()
    assert torch.equal(draws, again)


def test_keep_labels_defaults_to_false_and_must_be_a_flag():
    from cssl_core.replay.release import keep_labels

    assert keep_labels({}) is False and keep_labels({"keep_labels": True}) is True
    with pytest.raises(ValueError, match="replay.keep_labels must be true or false, got 'yes'"):
        keep_labels({"keep_labels": "yes"})
