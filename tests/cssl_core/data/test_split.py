"""cssl_core/data/split.py: the patient-level train / validation / audit split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cssl_core.data.split import patient_split, train_val_split


def _index(n_patients: int, per_patient: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"patient_key": [f"p{i % n_patients}" for i in range(n_patients * per_patient)]})


def _patients(index: pd.DataFrame, rows: np.ndarray) -> set[str]:
    return set(index["patient_key"].iloc[rows])


def test_the_three_sides_are_disjoint_by_patient_and_cover_every_row():
    index = _index(10)
    split = patient_split(index, 0.2, seed=0, audit_fraction=0.2)
    sides = [_patients(index, rows) for rows in split]
    assert [len(s) for s in sides] == [6, 2, 2]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sorted(np.concatenate(list(split)).tolist()) == list(range(len(index)))


def test_the_audit_patients_come_from_the_training_side_only():
    """Raising audit_fraction leaves validation (and so every forgetting metric) where it was."""
    index = _index(12)
    before = patient_split(index, 0.25, seed=3)
    after = patient_split(index, 0.25, seed=3, audit_fraction=0.25)
    assert np.array_equal(before.val, after.val) and len(before.audit) == 0
    assert sorted(np.concatenate([after.train, after.audit]).tolist()) == before.train.tolist()
    assert len(_patients(index, after.audit)) == 3


def test_audit_fraction_zero_is_the_two_way_split():
    index = _index(10)
    for seed in (0, 1, 7):
        train, val = train_val_split(index, 0.2, seed)
        split = patient_split(index, 0.2, seed)
        assert np.array_equal(train, split.train) and np.array_equal(val, split.val) and split.audit.size == 0


def test_a_fraction_above_zero_holds_out_at_least_one_patient():
    split = patient_split(_index(3), 0.1, seed=0, audit_fraction=0.1)
    assert [len(_patients(_index(3), rows)) for rows in split] == [1, 1, 1]


def test_a_split_that_leaves_no_training_patient_names_both_keys():
    with pytest.raises(ValueError) as caught:
        patient_split(_index(2), 0.5, seed=0, audit_fraction=0.5)
    line = str(caught.value)
    assert "\n" not in line and "ssl.val_fraction" in line and "ssl.audit_fraction" in line
    with pytest.raises(ValueError, match="audit_fraction must be in"):
        patient_split(_index(4), 0.2, seed=0, audit_fraction=1.0)
