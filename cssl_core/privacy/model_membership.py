"""Membership against the released model weights: was this patient in the stage's training data?

The buffer never travels alone: the stage's model goes with it, it was trained on the same patients, and `dp`'s
epsilon does not cover it (docs/privacy.md). The classic attack on a model's weights is the loss test: a model
fits its training data better than data it never saw. Here the loss is the model's own pretext, the masked
reconstruction loss of the MAE (`MaskedAutoencoder.mae_loss`, reduction "none": one value per slice, as
export's `selective` selector ranks slices), with masks drawn from a fixed seed (MASK_SEED) so that every run
hides the same patches of the same slices. A patient's score is minus the mean loss over their query slices
(lower loss: more likely a member), and the figure is the ROC AUC over patients with its bootstrap interval,
computed by `cssl_core.privacy.membership.patient_membership`, the same function (and so the same sklearn AUC
and interval) as the buffer's membership figure, on the same query slices: members are other training slices
of the buffer's patients, non-members the stage's held-out patients (cssl_core/privacy/victims.py).
"""

from __future__ import annotations

import numpy as np
import torch

from cssl_core.models.mae import MaskedAutoencoder
from cssl_core.privacy.common import ReleasedEncoder, as_slices, check_slice_size, eval_mode
from cssl_core.privacy.membership import patient_membership

MASK_SEED = 0  # fixed: the same patches of every slice are hidden on every run, whatever the audit's seed
LOSS_BATCH = 64


def released_mae(model: MaskedAutoencoder | ReleasedEncoder) -> MaskedAutoencoder:
    """The full MAE behind the attacker's view of a buffer (the weights that travel with it)."""
    inner = model.inner if isinstance(model, ReleasedEncoder) else model
    if not isinstance(inner, MaskedAutoencoder):
        raise ValueError(f"the released model must be a MaskedAutoencoder, got {type(inner).__name__}")
    return inner


@torch.no_grad()
def slice_losses(model: MaskedAutoencoder | ReleasedEncoder, slices: np.ndarray, seed: int = MASK_SEED) -> np.ndarray:
    """(n,) masked-reconstruction loss of the model on each slice, at its training mask ratio, masks drawn from
    `torch.Generator().manual_seed(seed)` batch by batch (deterministic for the same slices in the same order)."""
    mae = released_mae(model)
    x = as_slices(slices, "slices")
    check_slice_size(mae, x, "slices")
    generator = torch.Generator().manual_seed(int(seed))
    parts = []
    with eval_mode(mae):
        for start in range(0, len(x), LOSS_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + LOSS_BATCH]))[:, None]
            per_slice, _ = mae.mae_loss(batch, generator=generator, reduction="none")
            parts.append(per_slice.double().numpy())
    return np.concatenate(parts)


def model_membership(
    model: MaskedAutoencoder | ReleasedEncoder,
    slices: np.ndarray,
    is_member: np.ndarray,
    patient: np.ndarray,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Patient-level loss-test membership AUC against the released model, with its 95 % bootstrap interval.

    Args:
        model: the released stage model (a ReleasedEncoder is unwrapped to its MAE).
        slices: (q, S, S) query slices of known patients.
        is_member: (q,) bool, the query's patient trained the stage (scoring side).
        patient: (q,) an integer per query's patient (scoring side).
        seed: the bootstrap's.
    Returns:
        patient_membership's auc, ci_low, ci_high, n_members, n_non_members, plus the median over patients of
        each group's mean loss (loss_members_p50, loss_non_members_p50) and the mask seed.
    """
    losses = slice_losses(model, slices)
    m, p = np.asarray(is_member, dtype=bool), np.asarray(patient)
    out: dict[str, float | int | None] = dict(patient_membership(-losses, m, p, seed=seed))
    ids = list(dict.fromkeys(p.tolist()))
    per_patient = np.array([losses[p == i].mean() for i in ids])
    member = np.array([bool(m[p == i][0]) for i in ids])
    for key, group in (("loss_members_p50", member), ("loss_non_members_p50", ~member)):
        out[key] = float(f"{np.median(per_patient[group]):.6g}") if group.any() else None
    out["mask_seed"] = MASK_SEED
    return out
