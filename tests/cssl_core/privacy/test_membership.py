"""Patient-level membership: the likelihood ratio against stored cluster statistics, per-patient AUC and its
bootstrap interval (compared with scipy's own Gaussian density and sklearn's AUC)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.metrics import roc_auc_score

from cssl_core.privacy.membership import diagonal_gaussian_loglik, likelihood_ratio_scores, patient_membership


def test_the_mixture_density_matches_scipy():
    rng = np.random.default_rng(0)
    z, means = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    sds, weights = rng.uniform(0.5, 2.0, (2, 3)), np.array([3.0, 1.0])
    expected = np.log(sum(w / 4.0 * multivariate_normal(m, np.diag(s**2)).pdf(z)
                          for w, m, s in zip(weights, means, sds, strict=True)))  # fmt: skip
    np.testing.assert_allclose(diagonal_gaussian_loglik(z, means, sds, weights), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="a mixture needs"):
        diagonal_gaussian_loglik(z, means, sds, np.ones(3))


def test_the_statistics_of_few_patients_give_them_away_and_of_many_do_not():
    """A cluster mean/sd of 3 patients' latents scores those patients' other latents above non-members'; the same
    statistics pooled over 200 patients do not (the attack measures what it should, not noise)."""
    rng = np.random.default_rng(1)
    dim, per_patient = 64, 6
    centre = rng.standard_normal((260, dim))  # each patient has their own mean: what makes membership leak

    def latents(p: int) -> np.ndarray:
        return centre[p] + 0.3 * rng.standard_normal((per_patient, dim))

    reference = np.concatenate([latents(p) for p in range(210, 260)])
    aucs = {}
    for members in (3, 200):
        stored = np.concatenate([latents(p) for p in range(members)])
        means, sds, counts = stored.mean(0)[None], stored.std(0)[None], np.array([len(stored)])
        queries = [latents(p) for p in range(3)] + [latents(p) for p in range(200, 210)]
        patient = np.repeat(np.arange(13), per_patient)
        scores = likelihood_ratio_scores(np.concatenate(queries), means, sds, counts, reference)
        found = patient_membership(scores, patient < 3, patient, seed=0)
        aucs[members] = found["auc"]
        assert found["n_members"] == 3 and found["n_non_members"] == 10
        assert found["ci_low"] <= found["auc"] <= found["ci_high"]
    assert aucs[3] == 1.0 and aucs[200] < 0.8


def test_patient_auc_is_sklearns_over_patient_means_with_an_interval_that_narrows_with_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (4, 40):
        patient = np.repeat(np.arange(2 * n), 3)
        member = patient < n
        scores = rng.standard_normal(len(patient)) + 0.3 * member
        found = patient_membership(scores, member, patient, seed=0)
        means = np.array([scores[patient == p].mean() for p in range(2 * n)])
        assert found["auc"] == pytest.approx(roc_auc_score(np.arange(2 * n) < n, means), abs=1e-6)
        widths.append(found["ci_high"] - found["ci_low"])
    assert widths[1] < widths[0]
    alone = patient_membership(np.ones(4), np.ones(4, bool), np.arange(4))
    assert alone["auc"] is None and alone["n_non_members"] == 0


def test_the_slice_auc_interval_resamples_whole_patients():
    """Queries of one patient move together: the interval over patients is wider than one over slices would be,
    contains sklearn's AUC of the data, and is a point where every member outscores every non-member."""
    from cssl_core.privacy.membership import slice_auc_interval

    rng = np.random.default_rng(1)
    patient = np.repeat(np.arange(10), 16)
    is_member = patient < 6
    scores = rng.normal(size=10)[patient] + 0.1 * rng.normal(size=patient.size)  # patient effects, no membership
    low, high = slice_auc_interval(scores, is_member, patient, seed=0)
    auc = roc_auc_score(is_member, scores)
    assert low <= auc <= high and high - low > 0.4  # 6 vs 4 patients: chance and a strong attack alike
    assert slice_auc_interval(is_member.astype(float), is_member, patient) == (1.0, 1.0)
    assert slice_auc_interval(scores, np.ones_like(is_member), patient) == (None, None)
    with pytest.raises(ValueError, match="one per query"):
        slice_auc_interval(scores[:-1], is_member, patient)
