"""Patient-level train/validation split.

Slices of one patient are near-duplicates of each other; a slice-level split would leak the validation
patients into training and flatter every held-out number (reconstruction loss, probes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

PATIENT_COLUMN = "patient_key"


def train_val_split(
    index_df: pd.DataFrame, val_fraction: float, seed: int, audit_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (into `index_df`, i.e. into slices.npy) of the train and validation sides.

    round(val_fraction * n_patients) patients go to validation (at least one when val_fraction > 0), chosen
    by a seeded permutation of the patients in order of first row. The rows follow the content-ordered ingest
    tables, so the split depends on (data, fraction, seed), not on the key values, which change with the
    site's key secret. With `audit_fraction` > 0 the next patients of that permutation are held out as well
    (`patient_split`): they are on neither side.
    """
    split = patient_split(index_df, val_fraction, seed, audit_fraction)
    return split.train, split.val


class PatientSplit(NamedTuple):
    """Row positions of a stage's three kinds of patients.

    train: what the stage trains on. val: its validation loss and every later stage's forgetting metric.
    audit: patients of the same cohort that no stage trains or validates on, held out so that the privacy
    audit's membership tests have non-members drawn from the members' own distribution (another cohort
    would measure cohort shift, not membership).
    """

    train: np.ndarray
    val: np.ndarray
    audit: np.ndarray


def patient_split(index_df: pd.DataFrame, val_fraction: float, seed: int, audit_fraction: float = 0.0) -> PatientSplit:
    """The train / validation / audit split of one stage's rows, by patient.

    One seeded permutation of the patients (in order of first row): the first round(val_fraction * n) go to
    validation, the next round(audit_fraction * n) to the audit (at least one each when its fraction is > 0),
    the rest train. Validation comes first, so `audit_fraction` 0 gives exactly the two-way split of earlier
    releases, and raising it takes the audit's patients from the training side only.
    """
    if PATIENT_COLUMN not in index_df.columns:
        raise KeyError(f"index has no {PATIENT_COLUMN!r} column")
    for key, value in (("val_fraction", val_fraction), ("audit_fraction", audit_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {value}")
    keys = index_df[PATIENT_COLUMN].to_numpy()
    if pd.isna(keys).any():
        raise ValueError(f"{PATIENT_COLUMN} has missing values; every slice needs a patient")
    patients = np.asarray(pd.unique(keys), dtype=object)
    rows = np.arange(len(index_df), dtype=np.int64)
    n_val = max(1, int(round(val_fraction * len(patients)))) if val_fraction > 0 else 0
    n_audit = max(1, int(round(audit_fraction * len(patients)))) if audit_fraction > 0 else 0
    if n_val + n_audit >= len(patients):
        raise ValueError(
            f"cannot hold out {n_val} validation and {n_audit} audit patient(s) of {len(patients)} and keep one for "
            "training; add patients, or lower ssl.val_fraction or ssl.audit_fraction (0: the privacy audit then "
            "takes the validation patients as its non-members)"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    is_val = np.isin(keys, patients[order[:n_val]])
    is_audit = np.isin(keys, patients[order[n_val : n_val + n_audit]])
    return PatientSplit(train=rows[~(is_val | is_audit)], val=rows[is_val], audit=rows[is_audit])
