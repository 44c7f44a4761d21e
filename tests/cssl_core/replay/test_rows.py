"""The pure parts of a stage's buffer rows (cssl_core/replay/rows.py): the finding labels a buffer may keep and
the seeded order of its rows, which export and the audit's scoring must reproduce alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cssl_core.replay.rows import finding_labels, shuffled


def test_finding_labels_are_one_zero_and_minus_one_where_unannotated_and_leave_has_mask_out():
    index = pd.DataFrame({
        "has_nodule": pd.array([True, False, None, True], dtype="boolean"),
        "has_mask": [True, True, False, False],
        "patient_key": ["a", "a", "b", "b"],
    })
    labels = finding_labels(index, np.array([2, 0, 1]))
    assert list(labels) == ["nodule"]
    assert labels["nodule"].dtype == np.int8 and labels["nodule"].tolist() == [-1, 1, 0]


def test_shuffled_is_a_seeded_permutation_of_the_chosen_rows():
    chosen = np.arange(10, 30)
    first = shuffled(chosen, seed=3, stage_index=1)
    assert sorted(first.tolist()) == chosen.tolist() and first.tolist() != chosen.tolist()
    assert np.array_equal(first, shuffled(chosen, seed=3, stage_index=1))
    assert not np.array_equal(first, shuffled(chosen, seed=3, stage_index=2))  # each stage its own order
