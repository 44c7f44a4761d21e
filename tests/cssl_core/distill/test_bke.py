"""BKE: equals the closed form computed in numpy and its power series; no gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.distill import batch_affinity, bke, bke_power_series, bke_propagator


def _numpy_bke(t: np.ndarray, omega: float, tau: float) -> np.ndarray:
    pooled = t.mean(axis=1) if t.ndim == 3 else t
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    logits = unit @ unit.T / tau
    np.fill_diagonal(logits, -np.inf)
    a = np.exp(logits - logits.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    b = len(t)
    refined = (1 - omega) * np.linalg.inv(np.eye(b) - omega * a) @ t.reshape(b, -1)
    return refined.reshape(t.shape)


@pytest.mark.parametrize("shape", [(7, 5), (6, 4, 5)])
@pytest.mark.parametrize(("omega", "tau"), [(0.5, 0.1), (0.9, 1.0), (0.2, 0.05)])
def test_equals_numpy_inverse(shape: tuple[int, ...], omega: float, tau: float) -> None:
    t = np.random.default_rng(0).normal(size=shape)
    got = bke(torch.from_numpy(t), omega=omega, tau=tau)
    assert got.shape == shape and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _numpy_bke(t, omega, tau), rtol=1e-10, atol=1e-12)


def test_equals_power_series_for_many_terms_not_for_one() -> None:
    t = torch.randn(10, 3, 8, dtype=torch.float64)
    closed = bke(t, omega=0.5, tau=0.2)
    torch.testing.assert_close(bke_power_series(t, 0.5, 0.2, n_terms=60), closed, rtol=1e-10, atol=1e-12)
    one = bke_power_series(t, 0.5, 0.2, n_terms=1)
    torch.testing.assert_close(one, 0.5 * t)
    assert (one - closed).abs().max() > 1e-2


def test_affinity_rows_sum_to_one_with_zero_diagonal() -> None:
    a = batch_affinity(torch.randn(9, 4, 6), tau=0.1)
    assert a.shape == (9, 9)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(9))
    assert torch.all(a.diagonal() == 0)
    assert torch.all(a >= 0)


def test_propagator_has_unit_rows_and_is_what_bke_applies() -> None:
    t = torch.randn(8, 5, 6, dtype=torch.float64)
    p = bke_propagator(t, omega=0.6, tau=0.2)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(bke(t, omega=0.6, tau=0.2), (p @ t.reshape(8, -1)).reshape(t.shape))
    torch.testing.assert_close(bke_propagator(t[:1]), torch.ones(1, 1, dtype=torch.float64))


def test_omega_zero_and_single_sample_give_t_back() -> None:
    t = torch.randn(5, 3, 4)
    torch.testing.assert_close(bke(t, omega=0.0), t)
    one = torch.randn(1, 3, 4)
    torch.testing.assert_close(bke(one, omega=0.5), one)
    torch.testing.assert_close(bke_power_series(one, 0.5, 0.1, n_terms=5), one)


def test_no_grad_and_dtype_kept() -> None:
    t = torch.randn(6, 4, requires_grad=True)
    with torch.enable_grad():
        out = bke(t)
    assert not out.requires_grad and out.grad_fn is None
    half = bke(t.detach().half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), bke(t.detach()), rtol=1e-2, atol=1e-2)


def test_convex_combination_keeps_constant_targets() -> None:
    # unit row sums of (1 - omega)(I - omega A)^-1: identical targets are a fixed point
    t = torch.ones(5, 7)
    torch.testing.assert_close(bke(t, omega=0.7), t)


@pytest.mark.parametrize(("omega", "tau"), [(1.0, 0.1), (-0.1, 0.1), (0.5, 0.0), (0.5, -1.0)])
def test_rejects_bad_parameters(omega: float, tau: float) -> None:
    with pytest.raises(ValueError):
        bke(torch.randn(4, 3), omega=omega, tau=tau)
    with pytest.raises(ValueError):
        bke_power_series(torch.randn(4, 3), omega, tau, n_terms=3)
