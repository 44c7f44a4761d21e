"""Patient-grouped folds and few-shot subsets."""

from __future__ import annotations

import numpy as np
import pytest

from cssl_core.evaluation import few_shot, patient_folds


def _keys(n_patients: int = 7, seed: int = 0) -> np.ndarray:
    # uneven slice counts per patient, interleaved, like a real index
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 12, n_patients)
    keys = np.concatenate([[f"p{i:02d}"] * c for i, c in enumerate(counts)])
    return keys[rng.permutation(len(keys))]


@pytest.mark.parametrize("n_folds", [2, 3, 5, "loo"])
def test_folds_keep_each_patient_on_one_side_and_test_every_slice_once(n_folds):
    keys = _keys()
    folds = patient_folds(keys, n_folds, seed=3)
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(keys)))  # every slice tested exactly once
    for train, test in folds:
        assert len(test) and len(train)
        assert not set(keys[train]) & set(keys[test])  # no patient on both sides
        assert len(train) + len(test) == len(keys)


def test_loo_gives_one_fold_per_patient():
    keys = _keys()
    folds = patient_folds(keys, "loo", seed=0)
    assert len(folds) == len(set(keys))
    assert all(len(set(keys[test])) == 1 for _, test in folds)


def test_folds_are_seeded_and_validated():
    keys = _keys()
    same = patient_folds(keys, 3, seed=1), patient_folds(keys, 3, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(*same, strict=True))
    with pytest.raises(ValueError):
        patient_folds(keys, 8, seed=0)  # 7 patients
    with pytest.raises(ValueError):
        patient_folds(keys, 1, seed=0)
    with pytest.raises(ValueError):
        patient_folds(["p0"] * 4, "loo", seed=0)


def test_few_shot_takes_the_right_number_of_training_rows_deterministically():
    keys = _keys()
    train, _ = patient_folds(keys, 3, seed=0)[0]
    for fraction in (0.01, 0.1, 0.5, 1.0):
        subset = few_shot(train, keys, fraction, seed=5)
        assert set(subset) <= set(train)
        assert len(subset) == min(len(train), max(2, round(fraction * len(train))))
        assert np.array_equal(subset, few_shot(train, keys, fraction, seed=5))
    assert np.array_equal(few_shot(train, keys, 1.0, seed=5), np.sort(train))
    assert not np.array_equal(few_shot(train, keys, 0.3, seed=5), few_shot(train, keys, 0.3, seed=6))


def test_few_shot_keeps_a_rare_class_and_nests_across_fractions():
    n = 400
    keys = np.array([f"p{i // 20:02d}" for i in range(n)])
    labels = np.zeros(n, dtype=int)
    labels[::40] = 1  # 10 positives in 400: 2.5 %
    train = np.arange(0, n, 1)[keys != "p00"]
    smallest = few_shot(train, keys, 0.005, seed=0, labels=labels)  # round(0.005 * 380) = 2 slices
    assert len(smallest) == 2 and set(labels[smallest]) == {0, 1}
    subsets = [set(few_shot(train, keys, f, seed=0, labels=labels)) for f in (0.01, 0.1, 0.5, 1.0)]
    assert all(a <= b for a, b in zip(subsets, subsets[1:], strict=False))
    # stratified: 10 % of the slices hold about 10 % of the positives
    tenth = few_shot(train, keys, 0.1, seed=0, labels=labels)
    assert abs(labels[tenth].sum() - 0.1 * labels[train].sum()) <= 1


def test_few_shot_by_patients_takes_whole_patients():
    keys = _keys()
    train, _ = patient_folds(keys, 3, seed=0)[0]
    subset = few_shot(train, keys, 0.5, seed=2, unit="patients")
    picked = set(keys[subset])
    n_train_patients = len(set(keys[train]))
    assert len(picked) == max(1, round(0.5 * n_train_patients))
    assert np.array_equal(subset, np.sort(train[np.isin(keys[train], list(picked))]))  # all their slices


def test_few_shot_rejects_bad_input():
    keys = _keys()
    with pytest.raises(ValueError):
        few_shot(np.arange(5), keys, 0.0, seed=0)
    with pytest.raises(ValueError):
        few_shot(np.array([len(keys)]), keys, 0.5, seed=0)
    with pytest.raises(ValueError):
        few_shot(np.arange(5), keys, 0.5, seed=0, unit="rows")
