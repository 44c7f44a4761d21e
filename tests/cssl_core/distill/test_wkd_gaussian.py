"""Gaussian WKD: the closed form, checked against numpy and against POT's Bures-Wasserstein distance."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from cssl_core.distill import wkd_gaussian


def _numpy_gaussian(s: np.ndarray, t: np.ndarray, eps: float) -> float:
    # sum over channels, mean over samples, population std over tokens (the documented normalisation)
    if s.ndim == 2:
        s, t = s[None], t[None]
    mu_s, mu_t = s.mean(axis=1), t.mean(axis=1)
    sd_s, sd_t = np.sqrt(s.var(axis=1) + eps), np.sqrt(t.var(axis=1) + eps)
    return float((((mu_s - mu_t) ** 2).sum(-1) + ((sd_s - sd_t) ** 2).sum(-1)).mean())


@pytest.mark.parametrize("shape", [(5, 7, 4), (9, 6)])
@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.1])
def test_matches_numpy_formula(shape: tuple[int, ...], eps: float) -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=shape)
    t = 0.5 + 2.0 * rng.normal(size=shape)
    got = wkd_gaussian(torch.from_numpy(s), torch.from_numpy(t), eps=eps)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(_numpy_gaussian(s, t, eps), rel=1e-12)


def test_matches_pot_bures_wasserstein_on_diagonal_covariances() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 20, 6))
    t = rng.normal(loc=0.3, scale=1.7, size=(4, 20, 6))
    cs = np.stack([np.diag(v) for v in s.var(axis=1)])
    ct = np.stack([np.diag(v) for v in t.var(axis=1)])
    w = ot.gaussian.bures_wasserstein_distance(s.mean(axis=1), t.mean(axis=1), cs, ct, paired=True)
    expected = float(np.mean(w**2))
    assert wkd_gaussian(torch.from_numpy(s), torch.from_numpy(t), eps=0.0).item() == pytest.approx(expected, rel=1e-8)
    # the default eps only perturbs the value slightly
    assert wkd_gaussian(torch.from_numpy(s), torch.from_numpy(t)).item() == pytest.approx(expected, rel=1e-4)


def test_batch_input_is_one_gaussian_over_the_batch() -> None:
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(32, 5)), rng.normal(loc=1.0, size=(32, 5))
    w = ot.gaussian.bures_wasserstein_distance(s.mean(0), t.mean(0), np.diag(s.var(0)), np.diag(t.var(0)))
    assert wkd_gaussian(torch.from_numpy(s), torch.from_numpy(t), eps=0.0).item() == pytest.approx(w**2, rel=1e-8)


def test_zero_when_equal_and_gradient_finite() -> None:
    s = torch.randn(3, 8, 5)
    s[:, :, 0] = 1.0  # a constant channel: sigma = 0, where sqrt would have an infinite slope
    s.requires_grad_(True)
    loss = wkd_gaussian(s, s.detach().clone())
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(s.grad).all()


def test_sgd_step_reduces_loss() -> None:
    torch.manual_seed(0)
    s = torch.randn(6, 10, 8, requires_grad=True)
    t = torch.randn(6, 10, 8) * 2 + 1
    before = wkd_gaussian(s, t)
    before.backward()
    with torch.no_grad():
        s -= 0.05 * s.grad
    assert wkd_gaussian(s, t).item() < before.item()
