from __future__ import annotations

import numpy as np
import pytest

from cssl_core.privacy.baseline import predict_mean
from cssl_core.privacy.common import encode
from cssl_core.privacy.ridge import TokenRidge, fit_ridge, ridge_reconstruct
from cssl_core.privacy.scoring import score, summarise


def test_ridge_on_an_untrained_encoder_beats_the_mean_slice_clearly(tiny_model, blobs):
    attacker, victims = blobs(120, seed=1), blobs(16, seed=2)
    stored = encode(tiny_model, victims).astype(np.float16)  # what a latent buffer holds

    ridge = fit_ridge(tiny_model, attacker)
    recon = ridge_reconstruct(tiny_model, ridge, stored)
    attack = summarise(score(recon, victims), "ridge")
    baseline = summarise(score(predict_mean(attacker, len(victims)), victims), "baseline")

    assert recon.shape == victims.shape and recon.min() >= 0.0 and recon.max() <= 1.0
    assert attack["ridge_ssim_p50"] > 0.9
    assert attack["ridge_ssim_p50"] > baseline["baseline_ssim_p50"] + 0.4
    assert attack["ridge_psnr_p50"] > baseline["baseline_psnr_p50"] + 10.0


def test_ridge_on_random_latents_is_no_better_than_the_mean_slice(tiny_model, blobs):
    attacker, victims = blobs(120, seed=1), blobs(16, seed=2)
    real = encode(tiny_model, victims)
    rng = np.random.default_rng(5)  # same per-channel statistics as real latents, but no information about x
    random_latents = rng.normal(real.mean(0), real.std(0), size=real.shape).astype(np.float16)

    recon = fit_ridge(tiny_model, attacker).predict(random_latents)
    attack = summarise(score(recon, victims), "ridge")
    baseline = summarise(score(predict_mean(attacker, len(victims)), victims), "baseline")

    assert attack["ridge_ssim_p50"] < baseline["baseline_ssim_p50"] + 0.05
    assert attack["ridge_psnr_p50"] < baseline["baseline_psnr_p50"] + 1.0


def test_flips_double_the_attacker_data_and_do_not_hurt(tiny_model, blobs):
    attacker, victims = blobs(60, seed=1), blobs(8, seed=2)
    stored = encode(tiny_model, victims)
    with_flips = score(fit_ridge(tiny_model, attacker, flips=True).predict(stored), victims)["ssim"]
    without = score(fit_ridge(tiny_model, attacker, flips=False).predict(stored), victims)["ssim"]
    assert np.median(with_flips) >= np.median(without) - 0.01


def test_ridge_refuses_bad_input(tiny_model, blobs):
    with pytest.raises(ValueError, match="alpha"):
        TokenRidge(alpha=0.0)
    with pytest.raises(ValueError, match="before fit"):
        TokenRidge().predict(np.zeros((1, 16, 32), np.float32))
    with pytest.raises(ValueError, match=r"\(32, 32\)"):
        fit_ridge(tiny_model, blobs(4, seed=0, size=16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_ridge(tiny_model, blobs(4, seed=0) * 255.0)
    ridge = fit_ridge(tiny_model, blobs(8, seed=0))
    with pytest.raises(ValueError, match="different model size"):
        ridge_reconstruct(tiny_model, ridge, np.zeros((2, 9, 32), np.float16))
