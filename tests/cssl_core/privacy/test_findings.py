from __future__ import annotations

import numpy as np
import pytest

from cssl_core.privacy.baseline import predict_mean
from cssl_core.privacy.findings import FindingClassifier, finding_auc


def _with_findings(blobs, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blob slices where half carry a bright square "lesion" in the upper-left quadrant."""
    slices = blobs(n, seed=seed) * 0.6
    labels = (np.arange(n) % 2).astype(np.int8)
    slices[labels == 1, 4:12, 4:12] += 0.4
    return slices, labels


def test_classifier_finds_lesions_on_true_slices_but_not_on_the_mean_slice(blobs):
    attacker, attacker_labels = _with_findings(blobs, 80, seed=1)
    victims, victim_labels = _with_findings(blobs, 30, seed=2)
    classifier = FindingClassifier(pooled_size=8).fit(attacker, attacker_labels)

    assert finding_auc(classifier, victims, victim_labels) > 0.95
    assert finding_auc(classifier, predict_mean(attacker, len(victims)), victim_labels) == 0.5


def test_unknown_labels_are_left_out_not_counted_as_negative(blobs):
    attacker, labels = _with_findings(blobs, 60, seed=1)
    victims, victim_labels = _with_findings(blobs, 20, seed=2)
    noisy = labels.copy()
    noisy[:20] = -1
    classifier = FindingClassifier(pooled_size=8).fit(attacker, noisy)
    hidden = victim_labels.copy()
    hidden[hidden == 0] = -1  # only positives known: AUC undefined
    assert finding_auc(classifier, victims, hidden) is None
    assert finding_auc(classifier, victims, victim_labels) > 0.95


def test_findings_refuse_bad_labels(blobs):
    slices = blobs(6, seed=0)
    with pytest.raises(ValueError, match="both classes"):
        FindingClassifier().fit(slices, np.zeros(6, np.int8))
    with pytest.raises(ValueError, match="0, 1 or -1"):
        FindingClassifier().fit(slices, np.array([0, 1, 2, 0, 1, 0], np.int8))
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        FindingClassifier().fit(slices, np.zeros(5, np.int8))
    with pytest.raises(ValueError, match="before fit"):
        FindingClassifier().predict_proba(slices)
    with pytest.raises(ValueError, match="pooled_size"):
        FindingClassifier(pooled_size=0)
