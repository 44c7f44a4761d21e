"""cssl_core/privacy/victims.py: which patients the membership queries come from (the rest of `victims` needs a
trained stage: tests/tasks/test_privacy_audit.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cssl_core.privacy.victims import _queries


def _stage(n_patients: int = 8, per_patient: int = 10):
    keys = np.repeat([f"p{i}" for i in range(n_patients)], per_patient)
    index = pd.DataFrame({"patient_key": keys})
    slices = np.random.default_rng(0).random((len(keys), 8, 8)).astype(np.float32)
    rows = np.arange(len(keys))
    split = {"train_rows": rows[keys < "p4"].tolist(), "val_rows": rows[np.isin(keys, ["p4", "p5"])].tolist(),
             "audit_rows": rows[np.isin(keys, ["p6", "p7"])].tolist()}  # fmt: skip
    return slices, index, np.asarray(split["train_rows"]), split, keys


def test_non_members_are_the_validation_and_audit_patients_with_the_same_queries_per_patient():
    slices, index, train, split, keys = _stage()
    in_buffer = np.array([0, 10, 20])  # one row each of p0, p1, p2; p3 trains but is in no buffer row
    queries, is_member, patient, held_out = _queries(slices, index, in_buffer, train, split, 4, seed=0)
    assert held_out == {"n_validation_patients": 2, "n_audit_patients": 2}
    assert len(queries) == len(is_member) == len(patient) == 3 * 4 + 4 * 4
    member_patients, others = set(patient[is_member].tolist()), set(patient[~is_member].tolist())
    assert member_patients == {0, 1, 2} and others == {4, 5, 6, 7}
    assert all((patient == p).sum() == 4 for p in member_patients | others)
    stored = {tuple(slices[r].ravel()[:3]) for r in in_buffer}
    assert not stored & {tuple(q.ravel()[:3]) for q in queries}  # a buffer row is never its own query


def test_without_an_audit_holdout_the_validation_patients_are_the_non_members():
    slices, index, train, split, _ = _stage()
    split.pop("audit_rows")
    _, is_member, patient, held_out = _queries(slices, index, np.array([0]), train, split, 3, seed=1)
    assert held_out == {"n_validation_patients": 2, "n_audit_patients": 0}
    assert set(patient[~is_member].tolist()) == {4, 5}


def test_a_patient_with_fewer_slices_than_queries_gives_all_of_them_and_the_draw_is_seeded():
    slices, index, train, split, _ = _stage(per_patient=3)
    first = _queries(slices, index, np.array([0]), train, split, 16, seed=2)
    again = _queries(slices, index, np.array([0]), train, split, 16, seed=2)
    assert np.array_equal(first[0], again[0])
    assert (first[2] == 0).sum() == 2 and (first[2] == 6).sum() == 3  # p0 lost the buffered row
    assert _queries(slices, index, np.array([0]), train, split, 0, seed=2) == (None, None, None, {})
