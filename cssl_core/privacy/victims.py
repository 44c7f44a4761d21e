"""The victims' data for the scoring side of `audit@<stage>`: the only audit code that reads their windowed slices.

An audit plays two parties that must not share knowledge (docs/privacy.md, threat model). The attacker side
(tasks/privacy_audit.py) holds the buffer, the shared model and its own cohort's slices. To *score* what the
attacker got back, this module recovers each audited buffer row's true slice from the stage's own windowed
data (data/windowed/<cohort>-<window>, a DVC dep of the audit for this purpose only), the victims' finding
labels from that index, and membership queries: other training slices of the buffer's patients (members)
against the patients the stage held out of training (non-members: its audit and validation patients).
Nothing here is handed to an attack.

The buffer stores no row index, and no provenance: `cssl_core.replay.rows.build_stage_rows` rebuilds the stage's
rows from the same model, data and params (selection, shuffle and privacy mode are all seeded), as export did,
and the rebuilt rows must equal the stored ones bit for bit, which proves the provenance is the buffer's. A row
then has its source slice; an `aggregate` row (a cluster mean) is scored against its medoid: the member slice
whose latent is nearest to the mean. Patient keys only group the queries and are never written anywhere.
For the specificity figures (cssl_core.privacy.scoring.specificity) a cluster row also gets its member slices:
every cluster mode records which rows it summarised at release (`Released.members`; dp gives a cluster the noise
left empty the slice nearest its released mean), so the assignment is rebuilt, never guessed; at most
MEMBER_CAP of them, the medoid always among them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cssl_core.config import ProjectConfig
from cssl_core.privacy.common import as_slices, encode
from cssl_core.replay.rows import build_stage_rows, finding_labels

MEMBER_CAP = 64  # member slices kept per cluster row for scoring (seeded sample; the medoid always kept)


@dataclass
class Victims:
    """What scoring knows about the audited rows; `truth` and `labels` are row for row with them."""

    truth: np.ndarray  # (n, S, S) float32 in [0, 1]
    labels: dict[str, np.ndarray]  # finding name -> (n,) 0/1/-1, from the victims' index
    queries: np.ndarray | None  # (q, S, S) members first, then non-members
    query_is_member: np.ndarray | None
    query_patient: np.ndarray | None = None  # (q,) an integer per query's patient (position in the index's order)
    members: list[np.ndarray] | None = None  # per row (m_i, S, S): its member slices (a row: its own slice)
    # where the non-member queries come from: n_validation_patients, n_audit_patients (empty without queries)
    held_out: dict[str, int] = field(default_factory=dict)


def victims(stage: str, config: ProjectConfig, stored: np.ndarray, model, n_queries: int, seed: int) -> Victims:
    """Truth, labels and queries for the stored rows of one stage.

    Args:
        stage: the audited stage; its windowed data are the victims' slices.
        config: the run's params.yaml (the export's selection and privacy mode are rebuilt from it).
        stored: (n, ...) this stage's buffer rows, as stored (latents, cluster means or slices).
        model: the stage's MAE (the one that wrote the latents).
        n_queries: membership and re-identification query slices per patient (members, non-members); 0 for none.
        seed: draws the queries.
    """
    paths = config.continual.paths(stage)
    built = build_stage_rows(stage, config)
    rebuilt = None if built.buffer is None else np.asarray(built.buffer.data)
    if rebuilt is None or rebuilt.shape != stored.shape or not np.array_equal(rebuilt, np.asarray(stored)):
        raise ValueError(
            f"the buffer rows of stage {stage} are not what its export writes from the current model, data and params; "
            "were the buffer and model written by the same run? Rerun export and audit"
        )
    slices = np.load(paths.windowed / "slices.npy", mmap_mode="r")
    index = pd.read_parquet(paths.windowed / "index.parquet")
    split = json.loads((paths.model / "split.json").read_text())
    train = np.sort(np.asarray(split["train_rows"], dtype=np.int64))
    sources = [built.rows[m] for m in built.members]
    truth_rows = np.array([_medoid(model, slices, rows, stored[i]) for i, rows in enumerate(sources)], dtype=np.int64)
    truth = as_slices(np.asarray(slices[truth_rows]), "training slices")
    members = [truth[i : i + 1] if rows.size == 1 else _members(slices, rows, truth_rows[i], seed, i)
               for i, rows in enumerate(sources)]  # fmt: skip
    contributors = np.unique(np.concatenate(sources))
    queries, is_member, patient, held_out = _queries(slices, index, contributors, train, split, n_queries, seed)
    return Victims(truth=truth, labels=finding_labels(index, truth_rows), queries=queries, query_is_member=is_member,
                   query_patient=patient, members=members, held_out=held_out)  # fmt: skip


def _members(slices: np.ndarray, rows: np.ndarray, medoid: int, seed: int, position: int) -> np.ndarray:
    """A cluster's member slices: the medoid and up to MEMBER_CAP - 1 others drawn with the seed."""
    others = np.setdiff1d(rows, [medoid])
    rng = np.random.default_rng([seed, position])
    picked = rng.choice(others, size=min(MEMBER_CAP - 1, others.size), replace=False) if others.size else others
    keep = np.sort(np.concatenate([[medoid], picked]).astype(np.int64))
    return as_slices(np.asarray(slices[keep]), "cluster members")


def _medoid(model, slices: np.ndarray, rows: np.ndarray, stored_row: np.ndarray) -> int:
    """The source row of a stored row: itself, or for a cluster the member whose latent is nearest the stored mean."""
    if rows.size == 1:
        return int(rows[0])
    latents = encode(model, as_slices(np.asarray(slices[np.sort(rows)]), "cluster members"))
    distance = np.square(latents - np.asarray(stored_row, dtype=np.float32)).reshape(len(rows), -1).sum(axis=1)
    return int(np.sort(rows)[int(np.argmin(distance))])


def held_out_rows(split: dict) -> dict[str, np.ndarray]:
    """The rows a stage never trained on, by kind, from its split record (split.json): "validation" and "audit"
    (empty where ssl.audit_fraction held none out). The membership tests' non-members are both.

    Here rather than beside the split (cssl_core.data.split): importing cssl_core.data would make the audit stage
    depend on the whole data package."""
    return {"validation": np.asarray(split.get("val_rows", []), dtype=np.int64),
            "audit": np.asarray(split.get("audit_rows", []), dtype=np.int64)}  # fmt: skip


def _queries(slices, index, rows, train, split, n_queries: int, seed: int):
    """Up to `n_queries` slices of every patient on either side, drawn with the seed.

    Members: other training slices of the audited rows' patients. Non-members: the patients the stage held out
    of training, from the same cohort and window: its audit patients (ssl.audit_fraction, held out for this
    test) and its validation patients (never trained on either). Sampling per patient keeps a patient's score
    (the mean over their queries) equally well estimated on both sides, whatever the groups' sizes.
    """
    if n_queries < 1:
        return None, None, None, {}
    keys = index["patient_key"].to_numpy()
    patients, in_buffer = set(keys[rows].tolist()), set(rows.tolist())
    members = np.array([r for r in train if keys[r] in patients and r not in in_buffer], dtype=np.int64)
    held_out = held_out_rows(split)
    outsiders = np.sort(np.concatenate(list(held_out.values())))
    if not members.size or not outsiders.size:
        return None, None, None, {}
    rng = np.random.default_rng(seed)
    picks = [_per_patient(side, keys, n_queries, rng) for side in (members, outsiders)]
    chosen = np.concatenate(picks)
    queries = as_slices(np.asarray(slices[chosen]), "query slices")
    codes = {key: code for code, key in enumerate(dict.fromkeys(keys.tolist()))}  # integers, never the keys
    patient = np.array([codes[key] for key in keys[chosen].tolist()], dtype=np.int64)
    counts = {f"n_{name}_patients": len(set(keys[side].tolist())) for name, side in held_out.items()}
    return queries, np.arange(len(queries)) < len(picks[0]), patient, counts


def _per_patient(rows: np.ndarray, keys: np.ndarray, n_queries: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n_queries of each patient's rows (patients in order of first row), sorted."""
    rows = np.sort(rows)
    picked = [rng.choice(mine, size=min(n_queries, mine.size), replace=False)
              for key in dict.fromkeys(keys[rows].tolist()) for mine in [rows[keys[rows] == key]]]  # fmt: skip
    return np.sort(np.concatenate(picked)).astype(np.int64)
