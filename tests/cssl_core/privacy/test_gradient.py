from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.privacy.baseline import predict_mean
from cssl_core.privacy.common import encode
from cssl_core.privacy.gradient import gradient_invert, total_variation
from cssl_core.privacy.ridge import fit_ridge
from cssl_core.privacy.scoring import score


def test_gradient_inversion_from_the_mean_slice_matches_the_latent_and_improves_ssim(tiny_model, blobs):
    attacker, victims = blobs(60, seed=1), blobs(16, seed=2)
    stored = encode(tiny_model, victims).astype(np.float16)
    init = predict_mean(attacker, len(victims))
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    flags = [p.requires_grad for p in tiny_model.parameters()]

    result = gradient_invert(tiny_model, stored, init, steps=100, lr=0.05)

    assert result.images.shape == victims.shape and result.steps == 100
    assert 0.0 <= result.images.min() and result.images.max() <= 1.0
    assert np.all(result.latent_loss_end < 0.1 * result.latent_loss_start)
    assert np.median(score(result.images, victims)["ssim"]) > np.median(score(init, victims)["ssim"]) + 0.05
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert [p.requires_grad for p in tiny_model.parameters()] == flags
    assert all(p.grad is None for p in tiny_model.parameters())


def test_gradient_composes_with_ridge_and_improves_on_its_output(tiny_model, blobs):
    attacker, victims = blobs(60, seed=1), blobs(16, seed=2)
    stored = encode(tiny_model, victims).astype(np.float16)
    init = fit_ridge(tiny_model, attacker).predict(stored)

    result = gradient_invert(tiny_model, stored, init, steps=60, lr=0.01)

    assert np.median(result.latent_loss_end) < np.median(result.latent_loss_start)
    assert np.median(score(result.images, victims)["ssim"]) > np.median(score(init, victims)["ssim"])


def test_zero_steps_return_the_init_and_bad_arguments_are_refused(tiny_model, blobs):
    victims = blobs(3, seed=2)
    stored = encode(tiny_model, victims)
    init = np.full_like(victims, 0.5)
    result = gradient_invert(tiny_model, stored, init, steps=0)
    assert np.array_equal(result.images, init)
    assert np.array_equal(result.latent_loss_start, result.latent_loss_end)
    with pytest.raises(ValueError, match="one init slice per latent"):
        gradient_invert(tiny_model, stored, init[:2], steps=1)
    with pytest.raises(ValueError, match="tv_weight"):
        gradient_invert(tiny_model, stored, init, steps=1, tv_weight=-1.0)
    with pytest.raises(ValueError, match="steps"):
        gradient_invert(tiny_model, stored, init, steps=-1)


def test_total_variation_is_zero_on_flat_images_and_grows_with_edges():
    flat = torch.full((2, 1, 8, 8), 0.3)
    edged = flat.clone()
    edged[1, :, :, 4:] = 0.9
    tv = total_variation(edged)
    assert total_variation(flat).tolist() == [0.0, 0.0]
    assert tv[0] == 0.0 and tv[1] > 0.0


def test_gradient_inversion_stops_when_its_objective_stalls(tiny_model, blobs):
    from cssl_core.privacy.gradient import CONVERGE_WINDOW

    victims = blobs(3, seed=2)
    stored = encode(tiny_model, victims)
    init = np.full_like(victims, 0.5)
    exact = gradient_invert(tiny_model, stored, init, steps=3 * CONVERGE_WINDOW)
    assert exact.steps == 3 * CONVERGE_WINDOW and not exact.converged
    # a tolerance no check can meet stops at the second check, with the same images as that many plain steps
    quick = gradient_invert(tiny_model, stored, init, steps=10 * CONVERGE_WINDOW, converge_tol=0.99)
    plain = gradient_invert(tiny_model, stored, init, steps=2 * CONVERGE_WINDOW)
    assert quick.converged and quick.steps == 2 * CONVERGE_WINDOW
    assert np.array_equal(quick.images, plain.images)
    with pytest.raises(ValueError, match="converge_tol"):
        gradient_invert(tiny_model, stored, init, steps=1, converge_tol=-1.0)
