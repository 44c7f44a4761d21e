from __future__ import annotations

import numpy as np
import pytest

from cssl_core.privacy.scoring import PSNR_MAX_DB, score, summarise


def test_identical_slices_score_perfectly_and_noise_scores_lower(blobs):
    truth = blobs(6, seed=0)
    rng = np.random.default_rng(0)
    slight = np.clip(truth + rng.normal(0, 0.02, truth.shape), 0, 1).astype(np.float32)
    heavy = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)

    exact, a, b = score(truth, truth), score(slight, truth), score(heavy, truth)

    assert np.allclose(exact["ssim"], 1.0) and np.all(exact["psnr"] == PSNR_MAX_DB)
    assert np.all(a["ssim"] < 1.0) and np.all(b["ssim"] < a["ssim"])
    assert np.all(b["psnr"] < a["psnr"]) and np.all(a["psnr"] < PSNR_MAX_DB)
    assert np.allclose(a["psnr"], 10 * np.log10(1.0 / ((slight - truth) ** 2).mean(axis=(1, 2))), atol=1e-3)


def test_uint8_slices_are_scored_on_the_unit_range(blobs):
    truth = blobs(3, seed=0)
    as_uint8 = np.round(truth * 255).astype(np.uint8)
    scores = score(as_uint8, truth)
    assert np.all(scores["ssim"] > 0.99) and np.all(scores["psnr"] > 45.0)


def test_summarise_gives_median_and_95th_percentile_under_flat_keys():
    values = {"ssim": np.linspace(0, 1, 101), "psnr": np.linspace(10, 30, 101)}
    out = summarise(values, "ridge")
    assert out == {"ridge_ssim_p50": 0.5, "ridge_ssim_p95": 0.95, "ridge_psnr_p50": 20.0, "ridge_psnr_p95": 29.0}


def test_scoring_refuses_misaligned_or_out_of_range_input(blobs):
    truth = blobs(4, seed=0)
    with pytest.raises(ValueError, match="align row for row"):
        score(truth[:3], truth)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score(truth * 2.0, truth)
    with pytest.raises(ValueError, match="SSIM window"):
        score(truth[:, :8, :8], truth[:, :8, :8])
    with pytest.raises(ValueError, match=r"\(n, S, S\)"):
        score(truth[0], truth[0])


def test_specificity_is_one_when_the_reconstructions_are_the_member_slices(blobs):
    from cssl_core.privacy.scoring import specificity

    members = blobs(10, seed=0)
    found = specificity(members, [members[i : i + 1] for i in range(10)], blobs(30, seed=1), seed=0)
    assert found["n"] == 10 and found["n_non_member_pool"] == 30 and found["members_p50"] == 1.0
    assert found["rate"] == 1.0 and found["ci_low"] == found["ci_high"] == 1.0
    assert found["member_ssim_p50"] == pytest.approx(1.0) and found["member_psnr_p50"] == PSNR_MAX_DB
    assert found["margin_p50"] > 0.1 and found["chance"] == pytest.approx(1 / 31, abs=1e-6)


def test_specificity_of_a_cluster_is_high_for_a_noisy_copy_and_chance_for_unrelated_images(blobs):
    """Cluster-sized member sets against an equal pool of non-members: chance is 0.5; a slightly noisy copy of
    one member is singled out, images unrelated to either side are not."""
    from cssl_core.privacy.scoring import specificity

    n, size = 40, 6
    clusters = [blobs(size, seed=100 + i) for i in range(n)]
    pool = blobs(size, seed=7)
    noisy = np.clip(np.stack([c[0] for c in clusters]) + np.random.default_rng(0).normal(0, 0.03, (n, 32, 32)), 0, 1)
    copied = specificity(noisy.astype(np.float32), clusters, pool, seed=0)
    unrelated = specificity(blobs(n, seed=8), clusters, pool, seed=0)
    assert copied["rate"] == 1.0 and copied["chance"] == 0.5 and copied["margin_p50"] > 0
    assert 0.25 <= unrelated["rate"] <= 0.75 and abs(unrelated["margin_p50"]) < 0.1
    assert unrelated["ci_low"] < 0.5 < unrelated["ci_high"] and unrelated["ci_high"] - unrelated["ci_low"] < 0.4
    with pytest.raises(ValueError, match="one member set per reconstruction"):
        specificity(noisy, clusters[:3], pool, seed=0)


def test_the_rate_interval_is_a_bootstrap_over_rows():
    from cssl_core.privacy.scoring import bootstrap_rate

    assert bootstrap_rate(np.ones(5, bool), seed=0) == (1.0, 1.0)
    low, high = bootstrap_rate(np.arange(100) % 2 == 0, seed=0)
    assert 0.35 < low < 0.5 < high < 0.65
    assert bootstrap_rate(np.arange(100) % 2 == 0, seed=0) == (low, high)
