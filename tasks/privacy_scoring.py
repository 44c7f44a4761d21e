"""The scoring side of `audit@<stage>`: the only code of the stage that reads the victims' windowed slices.

An audit plays two parties that must not share knowledge (docs/privacy.md, threat model). The attacker side
(tasks/privacy_audit.py) holds the buffer, the shared model and its own cohort's slices. To *score* what the
attacker got back, this module recovers each audited buffer row's true slice from the stage's own windowed
data (data/windowed/<cohort>-<window>, a DVC dep of the audit for this purpose only), the victims' finding
labels from that index, and re-identification queries: other training slices of the buffer's patients
(members) against the stage's held-out patients (non-members). Nothing here is handed to an attack.

The buffer stores no row index, so a row is found by exact match: the stage's training slices re-encoded by
the stage's own model (latent buffer; float16 as stored) or compared as pixels (image buffer). Patient keys
only group the queries and are never written anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cssl_core.privacy.common import as_slices, encode
from tasks.export import finding_labels

MATCH_TOLERANCE = 1e-2  # relative error above which a stored row matches no training slice (float16 ~1e-3)


@dataclass
class Victims:
    """What scoring knows about the audited rows; `truth` and `labels` are row for row with them."""

    truth: np.ndarray  # (n, S, S) float32 in [0, 1]
    labels: dict[str, np.ndarray]  # finding name -> (n,) 0/1/-1, from the victims' index
    queries: np.ndarray | None  # (q, S, S) members first, then non-members
    query_is_member: np.ndarray | None


def _match_rows(stored: np.ndarray, candidates: np.ndarray, what: str) -> np.ndarray:
    """Position in `candidates` of each stored row (nearest, which must be an exact copy up to float16)."""
    flat = candidates.reshape(len(candidates), -1).astype(np.float32)
    positions, worst = [], 0.0
    for row in stored.reshape(len(stored), -1).astype(np.float32):
        errors = np.abs(flat - row).max(axis=1)
        best = int(np.argmin(errors))
        worst = max(worst, float(errors[best] / (np.abs(row).max() + 1e-12)))
        positions.append(best)
    if worst > MATCH_TOLERANCE:
        raise ValueError(
            f"{what}: a buffer row matches no training slice of the stage (relative error {worst:.3g}); "
            "were the buffer, model and windowed slices written by the same run? Rerun export and audit"
        )
    return np.asarray(positions, dtype=np.int64)


def victims(
    windowed: Path, model_dir: Path, stored: np.ndarray, kind: str, model, n_queries: int, seed: int
) -> Victims:
    """Truth, labels and queries for the stored rows of one stage (`stored`: their latents or slices).

    Args:
        windowed: the stage's windowed data (slices.npy, index.parquet): the victims' slices.
        model_dir: the stage's model directory; its split.json names the training and held-out rows.
        stored: (n, ...) the audited buffer rows, as stored.
        kind: "latent" or "image".
        model: the stage's MAE (the one that wrote the latents); unused for an image buffer.
        n_queries: re-identification queries per group (members, non-members); 0 for none.
        seed: draws the queries.
    """
    slices = np.load(windowed / "slices.npy", mmap_mode="r")
    index = pd.read_parquet(windowed / "index.parquet")
    split = json.loads((model_dir / "split.json").read_text())
    train = np.sort(np.asarray(split["train_rows"], dtype=np.int64))
    if kind == "latent":
        candidates = encode(model, as_slices(np.asarray(slices[train]), "training slices")).astype(np.float16)
    else:
        candidates = np.asarray(slices[train])
    rows = train[_match_rows(np.asarray(stored), candidates, str(windowed))]
    truth = as_slices(np.asarray(slices[rows]), "training slices")
    queries, is_member = _queries(slices, index, rows, train, split, n_queries, seed)
    return Victims(truth=truth, labels=finding_labels(index, rows), queries=queries, query_is_member=is_member)


def _queries(slices, index, rows, train, split, n_queries: int, seed: int):
    """Members: other training slices of the audited rows' patients; non-members: the stage's held-out patients."""
    if n_queries < 1:
        return None, None
    keys = index["patient_key"].to_numpy()
    patients, in_buffer = set(keys[rows].tolist()), set(rows.tolist())
    members = np.array([r for r in train if keys[r] in patients and r not in in_buffer], dtype=np.int64)
    outsiders = np.asarray(split.get("val_rows", []), dtype=np.int64)
    if not members.size or not outsiders.size:
        return None, None
    rng = np.random.default_rng(seed)
    picks = [np.sort(rng.choice(p, size=min(n_queries, p.size), replace=False)) for p in (members, outsiders)]
    queries = as_slices(np.asarray(slices[np.concatenate(picks)]), "query slices")
    return queries, np.arange(len(queries)) < len(picks[0])
