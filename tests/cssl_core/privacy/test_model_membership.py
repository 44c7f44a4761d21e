"""The loss test against the released model: sklearn's AUC over per-patient mean losses, high when overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cssl_core.privacy.common import ReleasedEncoder
from cssl_core.privacy.model_membership import MASK_SEED, model_membership, slice_losses


def _patients(blobs, n_patients: int, per_patient: int, seed: int) -> np.ndarray:
    """Smooth blobs with a fixed random texture per slice: only a model that memorised a slice predicts its
    texture, so the loss test has something to find in a model trained on it and nothing in one that was not."""
    smooth = blobs(n_patients * per_patient, seed=seed)
    texture = np.random.default_rng(seed).uniform(0.0, 1.0, smooth.shape)
    return np.clip(0.6 * smooth + 0.4 * texture, 0.0, 1.0).astype(np.float32)


def test_the_auc_is_sklearns_on_minus_the_per_patient_mean_loss(tiny_model, blobs):
    slices = _patients(blobs, 6, 3, seed=0)
    patient = np.repeat(np.arange(6), 3)
    member = patient < 3
    found = model_membership(ReleasedEncoder(tiny_model), slices, member, patient)
    losses = slice_losses(tiny_model, slices)
    assert losses.shape == (18,) and np.isfinite(losses).all()
    np.testing.assert_array_equal(losses, slice_losses(tiny_model, slices, seed=MASK_SEED))  # fixed masks
    assert not np.array_equal(losses, slice_losses(tiny_model, slices, seed=MASK_SEED + 1))
    per_patient = np.array([losses[patient == p].mean() for p in range(6)])
    assert found["auc"] == pytest.approx(roc_auc_score(np.arange(6) < 3, -per_patient), abs=1e-6)
    assert found["n_members"] == 3 and found["n_non_members"] == 3 and found["mask_seed"] == MASK_SEED
    assert found["ci_low"] <= found["auc"] <= found["ci_high"]
    assert found["loss_members_p50"] == pytest.approx(np.median(per_patient[:3]), rel=1e-5)


def test_a_model_overfit_to_its_patients_gives_them_away(tiny_model, blobs):
    """Trained to memorise 6 patients' slices (300 steps: ~15 s on one thread), the model reconstructs them
    better than 6 unseen patients' of the same kind."""
    members, others = _patients(blobs, 6, 2, seed=1), _patients(blobs, 6, 2, seed=2)
    before = model_membership(tiny_model, np.concatenate([members, others]), np.arange(24) < 12,
                              np.repeat(np.arange(12), 2))  # fmt: skip
    model = tiny_model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(members)[:, None]
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(300):
            loss, _ = model.mae_loss(x, generator=generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    after = model_membership(model, np.concatenate([members, others]), np.arange(24) < 12, np.repeat(np.arange(12), 2))
    assert after["auc"] >= 0.9 and after["auc"] > before["auc"]
    assert after["loss_members_p50"] < after["loss_non_members_p50"]
