"""Sliced WKD: equals POT's numpy sliced Wasserstein (squared) with the same seed."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from cssl_core.distill import sliced_projections, wkd_sliced


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(loc=0.5, scale=1.5, size=shape)


def test_equals_pot_numpy_with_same_seed_squared() -> None:
    s, t = _pair((20, 8))
    expected = ot.sliced_wasserstein_distance(s, t, n_projections=30, seed=7) ** 2
    got = wkd_sliced(torch.from_numpy(s), torch.from_numpy(t), n_projections=30, seed=7)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_pools_tokens_or_works_per_sample() -> None:
    s, t = _pair((5, 11, 6), seed=1)
    pooled = ot.sliced_wasserstein_distance(s.mean(1), t.mean(1), n_projections=16, seed=3) ** 2
    per_sample = np.mean([ot.sliced_wasserstein_distance(s[i], t[i], n_projections=16, seed=3) ** 2 for i in range(5)])
    ts, tt = torch.from_numpy(s), torch.from_numpy(t)
    assert wkd_sliced(ts, tt, n_projections=16, seed=3).item() == pytest.approx(pooled, rel=1e-10)
    assert wkd_sliced(ts, tt, n_projections=16, seed=3, over="tokens").item() == pytest.approx(per_sample, rel=1e-10)


def test_seed_makes_it_reproducible() -> None:
    s, t = torch.randn(16, 8), torch.randn(16, 8)
    assert wkd_sliced(s, t, seed=1).item() == wkd_sliced(s, t, seed=1).item()
    assert wkd_sliced(s, t, seed=1).item() != wkd_sliced(s, t, seed=2).item()
    proj = sliced_projections(8, 5, seed=0)
    assert proj.shape == (8, 5)
    torch.testing.assert_close(proj.norm(dim=0), torch.ones(5))


@pytest.mark.parametrize("over", ["samples", "tokens"])
def test_step_reduces_loss_teacher_no_grad_and_finite_at_equality(over: str) -> None:
    torch.manual_seed(0)
    s = torch.randn(8, 6, 5, requires_grad=True)
    t = (torch.randn(8, 6, 5) * 2 + 1).requires_grad_(True)
    before = wkd_sliced(s, t, over=over)
    before.backward()
    assert t.grad is None
    with torch.no_grad():
        s -= 0.5 * s.grad
    assert wkd_sliced(s, t, over=over).item() < before.item()
    # first continual step: student == teacher; the squared form keeps the gradient finite (zero)
    s.grad = None
    same = wkd_sliced(s, s.detach().clone(), over=over)
    same.backward()
    assert same.item() == 0.0
    assert torch.isfinite(s.grad).all()
