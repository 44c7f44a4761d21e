"""bench/inserted_findings.py: the inserted disks are where the labels say, and a texture keeps the grey level."""

from __future__ import annotations

import numpy as np
import pytest

from bench import inserted_findings as bench


def _slices(n: int = 40) -> np.ndarray:
    return np.full((n, 96, 96), 40.0, dtype=np.float32)  # soft tissue everywhere


def test_a_blob_brightens_exactly_the_labelled_slices():
    hu = _slices()
    out, label = bench.insert(hu, "blob", 40.0, 5, seed=0)
    changed = (out != hu).any(axis=(1, 2))
    assert 0 < label.sum() < len(label) and (changed == label.astype(bool)).all()
    assert np.isclose(out[label == 1].sum(axis=(1, 2)) - hu[label == 1].sum(axis=(1, 2)), 40.0 * 81).all()  # r=5 disk


def test_a_texture_keeps_the_mean_grey_level():
    hu = _slices()
    out, label = bench.insert(hu, "stripes", 60.0, 8, seed=1)
    added = (out - hu)[label == 1]
    assert (np.abs(added).max(axis=(1, 2)) == 60.0).all()
    assert np.abs(added.sum(axis=(1, 2))).max() <= 60.0 * 20  # +-60 stripes nearly cancel over a 201-px disk


def test_no_soft_tissue_no_disk_and_unknown_kinds_are_refused():
    air = np.full((6, 96, 96), -1000.0, dtype=np.float32)
    out, label = bench.insert(air, "blob", 40.0, 5, seed=0)
    assert label.sum() == 0 and (out == air).all()
    with pytest.raises(ValueError, match="unknown finding kind"):
        bench.insert(_slices(4), "ring", 40.0, 5, seed=2)


@pytest.mark.parametrize(("kind", "axis"), [("mirror", 2), ("prone", 1)])
def test_an_orientation_flip_moves_anatomy_and_keeps_every_grey_level(kind, axis):
    hu = np.random.default_rng(3).normal(0.0, 100.0, (20, 96, 96)).astype(np.float32)
    out, label = bench.insert(hu, kind, 0.0, 0, seed=4)
    flipped = label == 1
    assert 0 < flipped.sum() < len(label)
    assert (out[flipped] == np.flip(hu[flipped], axis=axis)).all() and (out[~flipped] == hu[~flipped]).all()
    assert np.array_equal(np.sort(out, axis=None), np.sort(hu, axis=None))  # the same grey levels, rearranged
