"""OT WKD: values equal POT run independently in numpy; gradients reach the student only."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from cssl_core.distill import wkd_ot


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(loc=0.5, size=shape)


def _np_emd2(x: np.ndarray, y: np.ndarray) -> float:
    return float(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), ot.dist(x, y)))


def test_emd_on_samples_equals_numpy_emd2_of_pooled_features() -> None:
    s, t = _pair((12, 9, 5))
    got = wkd_ot(torch.from_numpy(s), torch.from_numpy(t), solver="emd")
    assert got.item() == pytest.approx(_np_emd2(s.mean(1), t.mean(1)), rel=1e-10)


def test_emd_on_batch_features_and_on_tokens() -> None:
    s, t = _pair((10, 6))
    assert wkd_ot(torch.from_numpy(s), torch.from_numpy(t)).item() == pytest.approx(_np_emd2(s, t), rel=1e-10)
    s, t = _pair((3, 7, 4), seed=1)
    expected = np.mean([_np_emd2(s[i], t[i]) for i in range(3)])
    assert wkd_ot(torch.from_numpy(s), torch.from_numpy(t), over="tokens").item() == pytest.approx(expected, rel=1e-10)


def test_sinkhorn_close_to_numpy_sinkhorn2() -> None:
    s, t = _pair((10, 4), seed=2)
    m = ot.dist(s, t)
    expected = float(ot.sinkhorn2(ot.unif(10), ot.unif(10), m, 0.5, stopThr=1e-12, numItermax=10000))
    got = wkd_ot(torch.from_numpy(s), torch.from_numpy(t), solver="sinkhorn", reg=0.5, max_iter=10000, stop_thr=1e-12)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # entropic cost is above the exact one and approaches it
    assert got.item() >= _np_emd2(s, t) - 1e-9


def test_emd_gradient_matches_finite_differences() -> None:
    s_np, t_np = _pair((6, 3), seed=3)
    s = torch.from_numpy(s_np).requires_grad_(True)
    t = torch.from_numpy(t_np)
    wkd_ot(s, t).backward()
    h = 1e-6
    fd = np.zeros_like(s_np)
    for idx in np.ndindex(s_np.shape):
        plus, minus = s_np.copy(), s_np.copy()
        plus[idx] += h
        minus[idx] -= h
        fd[idx] = (_np_emd2(plus, t_np) - _np_emd2(minus, t_np)) / (2 * h)
    np.testing.assert_allclose(s.grad.numpy(), fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("options", [{"solver": "emd"}, {"solver": "sinkhorn", "reg": 1.0}, {"over": "tokens"}])
def test_step_reduces_loss_and_teacher_gets_no_grad(options: dict) -> None:
    torch.manual_seed(0)
    s = torch.randn(8, 5, 6, requires_grad=True)
    t = (torch.randn(8, 5, 6) + 1.0).requires_grad_(True)
    before = wkd_ot(s, t, **options)
    before.backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    with torch.no_grad():
        s -= 0.1 * s.grad
    assert wkd_ot(s, t, **options).item() < before.item()


def test_rejects_bad_options() -> None:
    s = torch.randn(4, 3)
    with pytest.raises(ValueError, match="solver"):
        wkd_ot(s, s, solver="greenkhorn")
    with pytest.raises(ValueError, match="reg"):
        wkd_ot(s, s, solver="sinkhorn", reg=0.0)
    with pytest.raises(ValueError, match="tokens"):
        wkd_ot(s, s, over="tokens")
