"""Re-identification: given another scan of a known patient, can the attacker tell that patient is in the buffer?

Membership is itself sensitive (a buffer of a cancer cohort), and it needs no inversion at all: the attacker
encodes the query scan (another slice of the same patient, or the same slice in another window) with the
shared lower encoder and looks for a close row in the buffer. The score of a query is its largest cosine
similarity to any buffer row; the figure is the ROC AUC of that score, members vs non-members (0.5: no
better than chance, 1: every member found).

Vectors are centred on the attacker's own mean (mean latent, or mean slice for image buffers) before the
cosine: every latent token carries the same positional embedding, and every chest slice the same anatomy,
which would otherwise push all similarities towards 1 and blur the ranking.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from cssl_core.models.mae import MaskedAutoencoder
from cssl_core.privacy.common import as_slices, check_latents, check_model, check_slice_size, encode

CHUNK = 256


def nearest_similarity(queries: np.ndarray, rows: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    """Largest cosine similarity of each query to any row.

    Args:
        queries: (q, ...) vectors (latents or slices), flattened per item.
        rows: (n, ...) buffer rows of the same per-item shape.
        center: (...) subtracted from both before the cosine (the attacker's mean), or None.
    Returns:
        (q,) float64 in [-1, 1].
    """
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(rows, dtype=np.float64)
    if q.shape[1:] != r.shape[1:]:
        raise ValueError(f"queries {q.shape[1:]} and buffer rows {r.shape[1:]} must have the same per-item shape")
    if q.shape[0] == 0 or r.shape[0] == 0:
        raise ValueError("need at least one query and one buffer row")
    if center is not None:
        c = np.asarray(center, dtype=np.float64)
        if c.shape != q.shape[1:]:
            raise ValueError(f"center must have the per-item shape {q.shape[1:]}, got {c.shape}")
        q, r = q - c, r - c
    q = q.reshape(q.shape[0], -1)
    r = r.reshape(r.shape[0], -1)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    return np.concatenate([(q[i : i + CHUNK] @ r.T).max(axis=1) for i in range(0, q.shape[0], CHUNK)])


def reid_auc(scores: np.ndarray, is_member: np.ndarray) -> float | None:
    """ROC AUC of membership scores (members are the positives); None when only one group is present.

    Args:
        scores: (q,) a query's nearest-row similarity.
        is_member: (q,) bool, True where the query's patient has rows in the buffer (scoring side).
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_member)
    if m.shape != s.shape or m.dtype != bool:
        raise ValueError(f"is_member must be a bool array shaped like the scores {s.shape}, got {m.dtype} {m.shape}")
    if m.all() or not m.any():
        return None
    return round(float(roc_auc_score(m, s)), 6)


def latent_linkage_scores(
    model: MaskedAutoencoder,
    buffer_latents: np.ndarray,
    query_slices: np.ndarray,
    attacker_slices: np.ndarray | None = None,
) -> np.ndarray:
    """Scores for a latent buffer: lower(query) against the stored latents.

    Args:
        model: the shared MAE.
        buffer_latents: (n, tokens, dim) the whole buffer.
        query_slices: (q, S, S) the attacker's query scans.
        attacker_slices: (m, S, S) the attacker's own slices, whose mean latent centres the vectors (or None).
    Returns:
        (q,) nearest-row cosine similarity.
    """
    model = check_model(model)
    rows = check_latents(model, buffer_latents, "buffer latents")
    queries = as_slices(query_slices, "query slices")
    check_slice_size(model, queries, "query slices")
    center = None
    if attacker_slices is not None:
        own = as_slices(attacker_slices, "attacker slices")
        check_slice_size(model, own, "attacker slices")
        center = encode(model, own).mean(axis=0)
    return nearest_similarity(encode(model, queries), rows, center)


def pixel_linkage_scores(
    buffer_images: np.ndarray, query_slices: np.ndarray, attacker_slices: np.ndarray | None = None
) -> np.ndarray:
    """Scores for an image buffer (or for reconstructions): query pixels against stored pixels.

    Args:
        buffer_images: (n, S, S) stored slices (uint8 or float in [0, 1]).
        query_slices: (q, S, S) the attacker's query scans.
        attacker_slices: (m, S, S) whose mean slice centres the vectors (or None).
    """
    rows = as_slices(buffer_images, "buffer images")
    queries = as_slices(query_slices, "query slices")
    center = None if attacker_slices is None else as_slices(attacker_slices, "attacker slices").mean(axis=0)
    return nearest_similarity(queries, rows, center)
