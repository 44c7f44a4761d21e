"""The rows a stage adds to its replay buffer: encode its training slices, select, shuffle and release them.

Two stages must produce the identical rows from the same model, data and params: export@<stage>, which writes
them (tasks/export.py), and the audit's scoring (cssl_core/privacy/victims.py), which rebuilds them to know each
stored row's source slice, because the buffer stores no row index and no provenance (docs/privacy.md). Both
import this module, so the selection, the seeded shuffle and the privacy mode's release cannot drift apart.

What is kept depends on the strategy: latents z = f_low(x) (float16, no pixels) for latent replay, the slices
themselves for the raw-replay baselines (er, der, medcoss, joint), nothing for finetune. The subset comes from
the stage's training slices only (its held-out patients stay unseen, for evaluation). A stage's rows carry no
finding labels unless `replay.keep_labels` is true, and come in an order shuffled with the stage seed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from cssl_core.config import ProjectConfig
from cssl_core.layout import StagePaths
from cssl_core.models.io import load_model
from cssl_core.replay.modes import buffer_mode
from cssl_core.windowing import to_unit

BATCH = 64


@torch.no_grad()
def encode_rows(
    model, slices: np.ndarray, rows: np.ndarray, seed: int, *, latents: bool = True, losses: bool = True
) -> dict[str, np.ndarray | None]:
    """Pooled features of `rows` (sorted), and on request their lower latents and per-sample
    masked-reconstruction loss (only a latent buffer stores latents; only `selective` reads losses)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    pooled, latent_parts, loss_parts = [], [], []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        x = torch.from_numpy(to_unit(slices[chunk]))[:, None]
        z = model.lower(x)
        pooled.append(model.upper(z).mean(dim=1).numpy())
        if latents:
            latent_parts.append(z.to(torch.float16).numpy())
        if losses:
            per_sample, _ = model.mae_loss(x, generator=generator, reduction="none")
            loss_parts.append(per_sample.numpy())
    return {
        "pooled": np.concatenate(pooled),
        "latents": np.concatenate(latent_parts) if latents else None,
        "losses": np.concatenate(loss_parts) if losses else None,
    }


def finding_labels(index: pd.DataFrame, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample labels for analysis: 1/0 where known, -1 where the slice was not annotated."""
    labels = {}
    for column in index.columns:
        if column.startswith("has_") and column != "has_mask":
            values = index[column].iloc[rows]
            labels[column.removeprefix("has_")] = values.map({True: 1, False: 0}).fillna(-1).astype(np.int8).to_numpy()
    return labels


def shuffled(chosen: np.ndarray, seed: int, stage_index: int) -> np.ndarray:
    """The selected positions in a seeded random order: training order groups a patient's slices together,
    and so would the buffer's rows. Seeded by the run seed and the stage's place in the schedule."""
    return np.asarray(chosen)[np.random.default_rng([seed, stage_index]).permutation(len(chosen))]


@dataclass
class StageRows:
    """This stage's contribution to the buffer, and (for the audit's scoring only) where each stored row came from."""

    kind: str  # latent | image | none
    selection: str
    n_candidates: int
    rows: np.ndarray  # windowed-slice rows that were selected, in buffer order (before any privacy mode)
    members: list[np.ndarray]  # per stored row: positions into `rows` (one each, or a cluster's members)
    buffer: Any | None  # ReplayBuffer of the stored rows, or None (no buffer kept)


@dataclass(frozen=True)
class ExportPlan:
    """What export@<stage> keeps, decided once from params and the strategy's declarations; the audit's scoring
    rebuilds the rows from the same plan."""

    paths: StagePaths
    strategy: Any  # the configured Strategy: what it keeps (kind, forced selection/budget, DER features)
    kind: str  # latent | image | none
    selection: str
    budget: int | float
    privacy: Any  # ReleaseConfig of replay.privacy
    seed: int

    @property
    def privacy_mode(self) -> str:
        return self.privacy.mode if self.kind == "latent" else "n/a"


def export_plan(stage: str, config: ProjectConfig) -> ExportPlan:
    """The plan is seeded with ssl.train.seed, not a stage's train override: the audit rebuilds it the same way."""
    from cssl_core.strategies import build_strategy

    strategy = build_strategy(config.ssl.strategy, dict(config.ssl.strategy_options))
    replay = config.replay
    return ExportPlan(
        paths=config.continual.paths(stage),
        strategy=strategy,
        kind=strategy.kept_buffer_kind,
        selection=strategy.buffer_selection or replay.selection,
        budget=strategy.buffer_budget if strategy.buffer_budget is not None else replay.budget,
        privacy=replay.privacy,
        seed=config.ssl.train.seed,
    )


def build_stage_rows(stage: str, config: ProjectConfig, plan: ExportPlan | None = None) -> StageRows:
    """Select, shuffle and release this stage's rows: deterministic for the same model, data and params, which is
    what lets the audit rebuild the provenance of a buffer instead of the buffer storing it."""
    from cssl_core.replay.buffer import ReplayBuffer
    from cssl_core.replay.release import release
    from cssl_core.replay.selection import budget_exceeds, resolve_budget, select

    plan = plan or export_plan(stage, config)
    paths, strategy, replay, privacy = plan.paths, plan.strategy, config.replay, plan.privacy
    kind, selection, budget, seed = plan.kind, plan.selection, plan.budget, plan.seed
    empty = np.zeros(0, dtype=np.int64)
    if kind == "none":
        return StageRows(kind, selection, 0, empty, [], None)
    model, _ = load_model(paths.model)
    split = json.loads(paths.split.read_text())
    candidates = np.sort(np.asarray(split["train_rows"], dtype=np.int64))
    slices = np.load(paths.windowed / "slices.npy", mmap_mode="r")
    index = pd.read_parquet(paths.windowed / "index.parquet")
    encoded = encode_rows(model, slices, candidates, seed, latents=kind == "latent", losses=selection == "selective")
    count = resolve_budget(budget, len(candidates))
    if budget_exceeds(budget, len(candidates)):
        print(
            f"warning: replay.budget {budget} is larger than the {len(candidates)} training slices of stage "
            f"{stage}; keeping all {len(candidates)}",
            file=sys.stderr,
            flush=True,
        )
    if kind == "latent" and buffer_mode(privacy.mode).releases_all_candidates:
        chosen = np.arange(len(candidates))  # the mode picks its rows itself, without looking at their values
    else:
        chosen = select(
            selection,
            encoded["pooled"],
            count,
            losses=encoded["losses"],
            seed=seed,
            **replay.selection_options,
        )
        chosen = shuffled(chosen, seed, paths.index)
    rows = candidates[chosen]
    labels = finding_labels(index, rows) if replay.keep_labels else {}
    if kind == "latent":
        patients = index["patient_key"].to_numpy()[rows]  # grouping for `aggregate` and `dp`; never stored
        released = release(encoded["latents"][chosen], patients, privacy, seed=seed * 1000 + paths.index)
        n = len(released.latents)
        if released.spread is not None:
            labels = {}  # a cluster has no single finding
        new = ReplayBuffer(
            "latent",
            released.latents,
            np.array([stage] * n),
            np.array([paths.window] * n),
            labels=labels,
            spread=released.spread,
            counts=released.counts,
            ledger=[{"stage": stage, **released.accounting}] if released.accounting else [],
        )
        return StageRows(kind, selection, len(candidates), rows, released.members, new)
    features = encoded["pooled"][chosen].astype(np.float16) if strategy.buffer_features else None
    names = {"stage": np.array([stage] * len(rows)), "window": np.array([paths.window] * len(rows))}
    new = ReplayBuffer("image", np.asarray(slices[rows]), labels=labels, features=features, **names)
    members = [np.array([i], dtype=np.int64) for i in range(len(rows))]
    return StageRows(kind, selection, len(candidates), rows, members, new)
