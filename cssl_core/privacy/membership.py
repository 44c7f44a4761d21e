"""Patient-level membership inference: is this patient in the buffer? With a confidence interval and its n.

The slice-level re-identification figure (cssl_core.privacy.linkage) asks about single query slices. What a
hospital must answer is whether a *patient* can be shown to be in a buffer, and statistics of a few patients
(cluster means and sds: `aggregate`, `dp`) reveal that even when no row inverts into a slice: a likelihood test
of a patient's latents under the stored means/sds told members from non-members at AUC 0.935 on the demo.
So for a buffer of cluster statistics the score of a query slice is a likelihood ratio: its latent's
log-likelihood under the stored mixture (weights = cluster sizes, diagonal Gaussians) minus that under a
Gaussian fitted to the attacker's own latents (what any patient of the same kind looks like). For a buffer of
rows the score is the query's nearest-row cosine similarity. A patient's score is the mean over their query
slices, and the figure is the ROC AUC over patients, with a bootstrap interval over patients (members and
non-members resampled apart): with a handful of held-out patients the interval is wide, and the report says so.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

SD_FLOOR = 1e-3  # x the reference sd: a stored sd of 0 (one-slice cluster, float16 underflow) is not certainty
BOOTSTRAP = 1000


def diagonal_gaussian_loglik(z: np.ndarray, means: np.ndarray, sds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log sum_c w_c N(z; means_c, diag(sds_c^2)) per row of z.

    Args:
        z: (q, d) query vectors.
        means, sds: (k, d) the mixture's components.
        weights: (k,) non-negative, not all zero (normalised here).
    Returns:
        (q,) float64.
    """
    z, means, sds = (np.asarray(a, dtype=np.float64) for a in (z, means, sds))
    w = np.asarray(weights, dtype=np.float64)
    if means.shape != sds.shape or means.shape[1] != z.shape[1] or w.shape != (len(means),) or not w.sum() > 0:
        raise ValueError(f"a mixture needs means and sds (k, {z.shape[1]}) and k weights; got {means.shape}, "
                         f"{sds.shape}, {w.shape}")  # fmt: skip
    per_component = np.stack([
        -0.5 * (((z - m) / s) ** 2).sum(axis=1) - np.log(s).sum() - 0.5 * z.shape[1] * np.log(2 * np.pi)
        for m, s in zip(means, sds, strict=True)
    ], axis=1)  # fmt: skip
    return logsumexp(per_component + np.log(w / w.sum())[None, :], axis=1)


def likelihood_ratio_scores(
    queries: np.ndarray, means: np.ndarray, sds: np.ndarray, counts: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """Per query latent: log-likelihood under the stored clusters minus under the reference population.

    Args:
        queries: (q, ...) the query slices' latents (through the released encoder), flattened per item.
        means, sds: (k, ...) the stored cluster means and sds; counts: (k,) their sizes.
        reference: (m, ...) the attacker's own latents: the population a non-member comes from.
    """
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    ref_mean, ref_sd = ref.mean(axis=0), ref.std(axis=0) + 1e-6
    floor = SD_FLOOR * ref_sd
    stored_sd = np.maximum(np.asarray(sds, dtype=np.float64).reshape(len(sds), -1), floor)
    inside = diagonal_gaussian_loglik(q, np.asarray(means, dtype=np.float64).reshape(len(means), -1), stored_sd,
                                      np.asarray(counts, dtype=np.float64))  # fmt: skip
    outside = diagonal_gaussian_loglik(q, ref_mean[None, :], ref_sd[None, :], np.ones(1))
    return inside - outside


def patient_membership(
    scores: np.ndarray, is_member: np.ndarray, patient: np.ndarray, seed: int = 0
) -> dict[str, float | int | None]:
    """ROC AUC over patients (a patient's score: the mean of their query scores) and its 95 % bootstrap interval.

    Args:
        scores: (q,) per query slice, higher = more likely a member.
        is_member: (q,) bool, the query's patient is in the buffer (scoring side).
        patient: (q,) an integer per query's patient (scoring side; never leaves the audit).
    Returns:
        auc, ci_low, ci_high (None when either group is empty) and the two group sizes.
    """
    s, m, p = np.asarray(scores, dtype=np.float64), np.asarray(is_member, dtype=bool), np.asarray(patient)
    if not (s.shape == m.shape == p.shape):
        raise ValueError(f"scores, is_member and patient must be one per query: {s.shape}, {m.shape}, {p.shape}")
    ids = list(dict.fromkeys(p.tolist()))
    per_patient = np.array([s[p == i].mean() for i in ids])
    member = np.array([bool(m[p == i][0]) for i in ids])
    out: dict[str, float | int | None] = {"n_members": int(member.sum()), "n_non_members": int((~member).sum()),
                                          "auc": None, "ci_low": None, "ci_high": None}  # fmt: skip
    if member.all() or not member.any():
        return out
    out["auc"] = round(float(roc_auc_score(member, per_patient)), 6)
    # one score per patient: the patient-resampled interval of those scores is the interval over patients
    out["ci_low"], out["ci_high"] = slice_auc_interval(per_patient, member, np.arange(len(ids)), seed)
    return out


def slice_auc_interval(
    scores: np.ndarray, is_member: np.ndarray, patient: np.ndarray, seed: int = 0
) -> tuple[float | None, float | None]:
    """95 % interval of the slice-level ROC AUC (`reid_auc`) when whole patients are resampled.

    A patient's query slices are alike, so they are not independent draws: resampling slices would make the
    interval as narrow as if every slice were another patient. Members and non-members are resampled apart,
    each patient bringing all their queries. (None, None) when either group has no patient.
    """
    s, m, p = np.asarray(scores, dtype=np.float64), np.asarray(is_member, dtype=bool), np.asarray(patient)
    if not (s.shape == m.shape == p.shape):
        raise ValueError(f"scores, is_member and patient must be one per query: {s.shape}, {m.shape}, {p.shape}")
    groups = [list(dict.fromkeys(p[m == side].tolist())) for side in (True, False)]
    if not all(groups):
        return None, None
    rows = {i: np.flatnonzero(p == i) for i in dict.fromkeys(p.tolist())}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        picked = [np.concatenate([rows[i] for i in rng.choice(group, size=len(group))]) for group in groups]
        labels = np.r_[np.ones(len(picked[0])), np.zeros(len(picked[1]))]
        draws.append(roc_auc_score(labels, np.r_[s[picked[0]], s[picked[1]]]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return round(float(low), 6), round(float(high), 6)
