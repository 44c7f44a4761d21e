from __future__ import annotations

import numpy as np
import pytest

from cssl_core.privacy.common import encode
from cssl_core.privacy.linkage import latent_linkage_scores, nearest_similarity, pixel_linkage_scores, reid_auc


def test_the_same_slice_is_found_in_a_latent_buffer(tiny_model, blobs):
    members = blobs(20, seed=2)
    stored = encode(tiny_model, members).astype(np.float16)
    queries = np.concatenate([members, blobs(20, seed=3)])  # the buffer's own slices, then outsiders
    is_member = np.arange(40) < 20

    scores = latent_linkage_scores(tiny_model, stored, queries, attacker_slices=blobs(30, seed=1))

    assert np.all(scores[:20] > 0.999)
    assert reid_auc(scores, is_member) > 0.99


def test_unrelated_queries_give_chance_level(tiny_model, blobs):
    stored = encode(tiny_model, blobs(20, seed=2)).astype(np.float16)
    queries = blobs(200, seed=4)  # nobody here is in the buffer; "membership" is a coin flip
    is_member = np.random.default_rng(0).random(200) < 0.5

    auc = reid_auc(latent_linkage_scores(tiny_model, stored, queries, attacker_slices=blobs(30, seed=1)), is_member)

    assert abs(auc - 0.5) < 0.12


def test_image_buffer_linkage_compares_pixels(blobs):
    stored = blobs(10, seed=2)
    queries = np.concatenate([stored[:5], blobs(5, seed=3)])
    is_member = np.arange(10) < 5
    scores = pixel_linkage_scores(np.round(stored * 255).astype(np.uint8), queries, blobs(20, seed=1))
    assert reid_auc(scores, is_member) == 1.0


def test_nearest_similarity_and_auc_refuse_bad_input():
    rows = np.eye(3)
    assert np.allclose(nearest_similarity(np.eye(3)[:2], rows), [1.0, 1.0])
    with pytest.raises(ValueError, match="same per-item shape"):
        nearest_similarity(np.ones((2, 4)), rows)
    with pytest.raises(ValueError, match="center"):
        nearest_similarity(rows, rows, center=np.zeros(4))
    with pytest.raises(ValueError, match="bool"):
        reid_auc(np.array([0.1, 0.9]), np.array([0, 1]))
    assert reid_auc(np.array([0.1, 0.9]), np.array([True, True])) is None
