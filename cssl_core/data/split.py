"""Patient-level train/validation split.

Slices of one patient are near-duplicates of each other; a slice-level split would leak the validation
patients into training and flatter every held-out number (reconstruction loss, probes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PATIENT_COLUMN = "patient_key"


def train_val_split(index_df: pd.DataFrame, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (into `index_df`, i.e. into slices.npy) of the train and validation sides.

    round(val_fraction * n_patients) patients go to validation (at least one when val_fraction > 0), chosen
    by a seeded permutation of the patients in order of first row. The rows follow the content-ordered ingest
    tables, so the split depends on (data, fraction, seed), not on the key values, which change with the
    site's key secret.
    """
    if PATIENT_COLUMN not in index_df.columns:
        raise KeyError(f"index has no {PATIENT_COLUMN!r} column")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = index_df[PATIENT_COLUMN].to_numpy()
    if pd.isna(keys).any():
        raise ValueError(f"{PATIENT_COLUMN} has missing values; every slice needs a patient")
    patients = np.asarray(pd.unique(keys), dtype=object)
    rows = np.arange(len(index_df), dtype=np.int64)
    if val_fraction == 0.0:
        return rows, rows[:0]
    n_val = max(1, int(round(val_fraction * len(patients))))
    if n_val >= len(patients):
        raise ValueError(
            f"cannot hold out {n_val} of {len(patients)} patient(s) and keep one for training; "
            "lower val_fraction or add patients"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    is_val = np.isin(keys, patients[order[:n_val]])
    return rows[~is_val], rows[is_val]
