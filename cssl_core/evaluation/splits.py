"""Patient-grouped cross-validation folds and few-shot label subsets for the probes.

Slices of one patient are near-duplicates, so a slice-level split lets a probe recognise the patient rather
than the finding and flatters every number; every split here keeps a patient on one side only. Few-shot
subsets are drawn only from the training side of a fold, and prefixes of one seeded, class-interleaved
order, so the 1 % subset is inside the 10 % subset of the same seed: a learning curve then differs between
fractions by added labels, not by a fresh draw.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd


def _keys_array(patient_keys: np.ndarray | list | pd.Series) -> np.ndarray:
    keys = np.asarray(patient_keys, dtype=object)
    if keys.ndim != 1:
        raise ValueError(f"patient_keys must be 1-D (one key per slice), got shape {keys.shape}")
    if pd.isna(keys).any():
        raise ValueError("patient_keys has missing values; every slice needs a patient")
    return keys


def patients_in_row_order(patient_keys: np.ndarray | list | pd.Series) -> np.ndarray:
    """Distinct patient keys in order of their first row.

    Seeded splits permute this order rather than the sorted keys: the keys are keyed hashes that change
    with the site's secret, while the row order follows the content-ordered ingest tables, so the same
    data and seed give the same split at every site.
    """
    return np.asarray(pd.unique(_keys_array(patient_keys)), dtype=object)


def patient_folds(
    patient_keys: np.ndarray | list | pd.Series, n_folds: int | Literal["loo"], seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) row positions for k patient-grouped folds, or one fold per patient ("loo").

    Patients (in order of first row, then permuted by `seed`) are dealt into `n_folds` groups of near-equal
    patient counts, so every slice is tested exactly once across the folds. Leave-one-patient-out is the
    choice for small real cohorts (a few dozen NSCLC patients) where k-fold test sets would be a handful of
    patients anyway.
    """
    keys = _keys_array(patient_keys)
    patients = patients_in_row_order(keys)
    if n_folds == "loo":
        groups = [patients[i : i + 1] for i in range(len(patients))]
        if len(groups) < 2:
            raise ValueError("leave-one-patient-out needs at least 2 patients")
    else:
        if isinstance(n_folds, str) or int(n_folds) != n_folds or n_folds < 2:
            raise ValueError(f"n_folds must be an int >= 2 or 'loo', got {n_folds!r}")
        if n_folds > len(patients):
            raise ValueError(f"cannot make {n_folds} patient folds from {len(patients)} patient(s)")
        order = np.random.default_rng(seed).permutation(len(patients))
        groups = np.array_split(patients[order], int(n_folds))
    rows = np.arange(len(keys), dtype=np.int64)
    folds = []
    for group in groups:
        is_test = np.isin(keys, group)
        folds.append((rows[~is_test], rows[is_test]))
    return folds


def _stratified_order(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions 0..n-1 in an order whose every prefix is (near-)proportionally stratified by `classes`.

    Each class is shuffled; its r-th member gets the key (r + u) / n_class (u uniform in [0, 1)), a
    systematic sample of that class spread over [0, 1); the first member of every class is moved to the
    front so that any prefix as long as the number of classes holds all of them, even a rare class.
    """
    n = len(classes)
    keys = np.empty(n, dtype=np.float64)
    for value in np.unique(classes):
        members = np.flatnonzero(classes == value)
        members = members[rng.permutation(len(members))]
        rank = np.arange(len(members), dtype=np.float64)
        keys[members] = (rank + rng.uniform(size=len(members))) / len(members)
        keys[members[0]] = -1.0 + rng.uniform() * 1e-3  # the class representative: always early
    return np.argsort(keys, kind="stable")


def few_shot(
    train_idx: np.ndarray,
    patient_keys: np.ndarray | list | pd.Series,
    fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
    unit: Literal["slices", "patients"] = "slices",
) -> np.ndarray:
    """A seeded subset (sorted row positions) of `train_idx` holding `fraction` of the training labels.

    unit="slices" (the default, "1 %, 10 %, 100 % of the training patients' slices"): round(fraction * n)
    of the training slices, at least 2, stratified by `labels` so both classes are present whenever the
    training side has both. unit="patients": all slices of round(fraction * n_patients) training patients
    (at least 1, at least one patient with and one without a positive slice when `labels` allow), for
    label-budget curves where a label costs one annotated patient, not one slice. fraction=1 returns
    all of `train_idx`. `patient_keys` is indexed by row position, like the folds.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keys = _keys_array(patient_keys)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if len(train_idx) == 0:
        raise ValueError("train_idx is empty")
    if train_idx.min() < 0 or train_idx.max() >= len(keys):
        raise ValueError("train_idx has positions outside patient_keys")
    if len(np.unique(train_idx)) != len(train_idx):
        raise ValueError("train_idx has repeated positions")
    y = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(keys):
            raise ValueError(f"labels has {len(labels)} entries but patient_keys {len(keys)}")
        y = labels[train_idx].astype(np.int64)
    rng = np.random.default_rng(seed)

    if unit == "slices":
        k = min(len(train_idx), max(2, int(round(fraction * len(train_idx)))))
        classes = y if y is not None else np.zeros(len(train_idx), dtype=np.int64)
        chosen = train_idx[_stratified_order(classes, rng)[:k]]
    elif unit == "patients":
        train_keys = keys[train_idx]
        patients = patients_in_row_order(train_keys)
        if y is not None:
            positive = {p for p, v in zip(train_keys.tolist(), y.tolist(), strict=True) if v}
            classes = np.array([int(p in positive) for p in patients], dtype=np.int64)
        else:
            classes = np.zeros(len(patients), dtype=np.int64)
        k = min(len(patients), max(len(np.unique(classes)), int(round(fraction * len(patients)))))
        picked = patients[_stratified_order(classes, rng)[:k]]
        chosen = train_idx[np.isin(train_keys, picked)]
    else:
        raise ValueError(f"unit must be 'slices' or 'patients', got {unit!r}")
    return np.sort(chosen)
