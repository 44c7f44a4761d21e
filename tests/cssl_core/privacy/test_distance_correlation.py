"""distance_correlation against a float64 reference written from Székely's definition, its invariances, its
value on independent data, and its gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from cssl_core.privacy.distance_correlation import distance_correlation

torch.set_num_threads(1)


def reference_dcor(x: np.ndarray, z: np.ndarray) -> float:
    """Biased sample dCor in float64: scipy's pairwise distances, double centring by explicit loops."""

    def centred(rows: np.ndarray) -> np.ndarray:
        d = cdist(rows, rows, metric="euclidean")
        n = len(d)
        out = np.empty_like(d)
        row_means = [sum(d[i, k] for k in range(n)) / n for i in range(n)]
        col_means = [sum(d[k, j] for k in range(n)) / n for j in range(n)]
        grand = sum(row_means) / n
        for i in range(n):
            for j in range(n):
                out[i, j] = d[i, j] - row_means[i] - col_means[j] + grand
        return out

    a, b = centred(x.astype(np.float64)), centred(z.astype(np.float64))
    n = len(a)
    dcov2 = (a * b).sum() / n**2
    dvar_x, dvar_z = (a * a).sum() / n**2, (b * b).sum() / n**2
    return float(np.sqrt(dcov2 / np.sqrt(dvar_x * dvar_z)))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    "d1, d2, noise",
    [(5, 3, 0.5), (200, 40, 2.0), (9216, 64, 0.1)],  # the last: a flattened 96 px slice against a latent
)
def test_matches_the_float64_reference(d1, d2, noise):
    rng = _rng(d1)
    x = rng.uniform(0, 1, (24, d1))
    z = np.tanh(x[:, :d2] * 3) + noise * rng.standard_normal((24, d2))  # nonlinear, partial dependence
    got = distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(z).float())
    want = reference_dcor(x, z)
    assert 0.05 < want < 0.99  # neither extreme: the comparison exercises the whole formula
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(want, abs=2e-5)


def test_of_a_sample_with_itself_is_one():
    x = torch.from_numpy(_rng(1).standard_normal((16, 30))).float()
    assert distance_correlation(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_is_invariant_to_scale_rotation_and_shift():
    rng = _rng(2)
    x = rng.standard_normal((32, 12))
    rotation, _ = np.linalg.qr(rng.standard_normal((12, 12)))  # orthogonal
    moved = 3.7 * x @ rotation + rng.standard_normal(12) * 10
    got = distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(moved).float())
    assert got.item() == pytest.approx(1.0, abs=1e-5)
    # and a different dependent pair keeps its value under the same transform of one side
    z = np.sin(x[:, :4]) + 0.3 * rng.standard_normal((32, 4))
    before = distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(z).float())
    after = distance_correlation(torch.from_numpy(moved).float(), torch.from_numpy(z).float())
    assert after.item() == pytest.approx(before.item(), abs=1e-5)


def test_independent_gaussians_give_a_small_value_and_dependence_a_large_one():
    rng = _rng(3)
    x, z = rng.standard_normal((64, 1)), rng.standard_normal((64, 1))
    independent = distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(z).float()).item()
    assert 0.0 <= independent < 0.3
    dependent = distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(x**2).float())
    assert dependent.item() > 0.4  # no linear correlation at all (x² against symmetric x), still seen


def test_the_biased_statistic_of_independent_high_dimensional_samples_is_near_one():
    """The V-statistic's known bias (Székely & Rizzo 2013): at fixed B, independent samples' dCor -> 1 as the
    dimension grows, because pairwise distances concentrate and the diagonal terms dominate. At the sizes of a
    flattened 96 px slice and a tiny-preset latent it is ~0.999: a stage's loss/nopeek near 1 alone does not
    mean z leaks x; compare values, do not read them as absolute leakage."""
    rng = _rng(6)
    values = [
        distance_correlation(
            torch.from_numpy(rng.standard_normal((64, d))).float(),
            torch.from_numpy(rng.standard_normal((64, d))).float(),
        ).item()
        for d in (1, 10, 9216)
    ]
    assert values[0] < values[1] < values[2] and values[2] > 0.99


def test_is_float32_under_half_inputs_and_in_unit_interval():
    rng = _rng(4)
    x = torch.from_numpy(rng.uniform(0, 1, (16, 300))).to(torch.bfloat16)
    z = torch.from_numpy(rng.standard_normal((16, 10))).half()
    got = distance_correlation(x, z)
    assert got.dtype == torch.float32 and 0.0 <= got.item() <= 1.0
    assert got.item() == pytest.approx(reference_dcor(x.float().numpy(), z.float().numpy()), abs=1e-5)


def test_gradients_flow_and_are_finite_with_duplicate_rows():
    rng = _rng(5)
    x = torch.from_numpy(rng.standard_normal((10, 8))).float()
    x = torch.cat([x, x[:2]])  # coincident rows: distance 0 off the diagonal too
    z = (x[:, :3] + 0.5 * torch.randn(12, 3, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    x.requires_grad_(True)
    dcor = distance_correlation(x, z)
    dcor.backward()
    for grad in (x.grad, z.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # the gradient points the right way: a small step against it lowers dCor
    with torch.no_grad():
        lowered = distance_correlation(x, z - 0.05 * z.grad / z.grad.norm())
    assert lowered < dcor


def test_degenerate_batches():
    x = torch.ones(6, 4)  # no spread: dCor is defined as 0, without NaN
    z = torch.randn(6, 3, requires_grad=True)
    value = distance_correlation(x, z)
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="at least 2 rows"):
        distance_correlation(torch.randn(1, 4), torch.randn(1, 3))
    with pytest.raises(ValueError, match="batch sizes 4 and 5"):
        distance_correlation(torch.randn(4, 4), torch.randn(5, 3))
    with pytest.raises(ValueError, match="flatten"):
        distance_correlation(torch.randn(4, 1, 2, 2), torch.randn(4, 3))
