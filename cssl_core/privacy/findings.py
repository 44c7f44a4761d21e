"""Finding inference: does a reconstruction reveal the victim's finding (a lesion, a tumour), not just a slice?

An SSIM figure does not say whether the clinically sensitive part survives inversion. So the attacker trains
a plain classifier on their OWN labelled slices and applies it to the reconstructions; the AUC on the
reconstructions is set beside the AUC of the same classifier on the true slices. Equal AUCs mean the
reconstructions give away as much about findings as the images themselves.

The classifier is deliberately simple (logistic regression on average-pooled pixels): the figure is a lower
bound on what an attacker learns, and a simple model cannot hide a leak behind its own capacity.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cssl_core.privacy.common import as_slices

UNKNOWN = -1  # a label the buffer or the attacker does not know (cssl_core.replay.buffer.UNKNOWN_LABEL)


def _known(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    """Boolean mask of rows whose label is 0 or 1 (UNKNOWN rows are left out, never counted as negative)."""
    values = np.asarray(labels)
    if values.shape != (n,):
        raise ValueError(f"{name} must have one label per slice: shape ({n},), got {values.shape}")
    if values.dtype.kind not in "biu":
        raise ValueError(f"{name} must be bool or integer (0/1, -1 unknown), got {values.dtype}")
    values = values.astype(np.int64)
    if not np.isin(values, (UNKNOWN, 0, 1)).all():
        raise ValueError(f"{name} must be 0, 1 or {UNKNOWN} (unknown)")
    return values != UNKNOWN


def pooled_pixels(slices: np.ndarray, size: int) -> np.ndarray:
    """(n, S, S) -> (n, size*size): average-pooled pixels, the classifier's input."""
    x = torch.from_numpy(as_slices(slices, "slices"))[:, None]
    return torch.nn.functional.adaptive_avg_pool2d(x, size).flatten(1).numpy().astype(np.float64)


class FindingClassifier:
    """Logistic regression on pooled pixels, fitted on the attacker's labelled slices."""

    def __init__(self, pooled_size: int = 16, c: float = 0.1) -> None:
        """Args:
        pooled_size: side of the average-pooled image the classifier sees (>= 1).
        c: inverse L2 strength of the logistic regression (> 0).
        """
        if pooled_size < 1:
            raise ValueError(f"pooled_size must be at least 1, got {pooled_size}")
        if not np.isfinite(c) or c <= 0:
            raise ValueError(f"c must be positive, got {c}")
        self.pooled_size = int(pooled_size)
        self.c = float(c)
        self.model: Pipeline | None = None

    def fit(self, slices: np.ndarray, labels: np.ndarray) -> FindingClassifier:
        """Args:
        slices: (m, S, S) the attacker's own slices.
        labels: (m,) 0/1, or -1 where the attacker does not know (left out).
        """
        slices = as_slices(slices, "attacker slices")
        known = _known(labels, slices.shape[0], "attacker labels")
        y = np.asarray(labels)[known].astype(np.int64)
        if np.unique(y).size < 2:
            raise ValueError("the attacker's labelled slices must contain both classes (0 and 1) to train on")
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=2000))
        self.model.fit(pooled_pixels(slices[known], self.pooled_size), y)
        return self

    def predict_proba(self, slices: np.ndarray) -> np.ndarray:
        """(n, S, S) -> (n,) probability of the finding."""
        if self.model is None:
            raise ValueError("FindingClassifier.predict_proba before fit")
        return self.model.predict_proba(pooled_pixels(slices, self.pooled_size))[:, 1]


def finding_auc(classifier: FindingClassifier, slices: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of the classifier on `slices` against `labels` (unknown rows left out).

    Args:
        slices: (n, S, S) reconstructions or true slices.
        labels: (n,) 0/1/-1, the victims' true findings (scoring side).
    Returns:
        The AUC, or None when the known labels hold one class only (AUC undefined).
    """
    slices = as_slices(slices, "slices")
    known = _known(labels, slices.shape[0], "labels")
    y = np.asarray(labels)[known].astype(np.int64)
    if np.unique(y).size < 2:
        return None
    return round(float(roc_auc_score(y, classifier.predict_proba(slices[known]))), 6)
