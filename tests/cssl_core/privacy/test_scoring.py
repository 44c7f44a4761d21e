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
