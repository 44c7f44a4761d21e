"""How much does a replay buffer of a finished run give away? Every privacy attack on one buffer, one JSON line.

Runs after a demo run (`cssl demo` or `dvc repro`, which write data/buffers/<stage>, data/models/<stage> and
data/windowed/<cohort>-<window>) in the project given by --root. Its params.yaml is read as the stages read it
(cssl_core.config: validated, typed) and every path under data/ comes from cssl_core.layout, so the bench finds
what the pipeline wrote even when the layout changes. It plays both sides of docs/privacy.md's threat model and
keeps them apart:

- the attacker: the buffer, the shared model of the buffer's first stage (`--model` to choose another) and
  CT of the same kind from other patients: the windowed slices of every cohort no stage trained on (e.g. the
  NSCLC cohort) and/or the held-out validation patients of every stage (`--attacker unseen|val|both`), with
  their finding labels where the index has them;
- the scorer: recovers each buffer row's true slice by re-encoding the stage's training slices with the
  stage's own model (the buffer stores no row index; the match must be exact up to float16 or the bench
  stops), takes the victims' finding labels from the buffer, and builds re-identification queries:
  another slice of a buffer patient (members) vs a slice of a held-out patient (non-members), and the
  buffer row's own slice in another window of the same cohort where one exists. Patient keys are used
  only to build these groups and are never printed.

The audit (cssl_core.privacy.audit) runs on a seeded sample of --max-rows rows with the budgets below. The
JSON line holds the figures, the per-label finding AUCs, the budgets and counts actually used, and the wall
time per attack. The machine may be shared: pass --threads 1 on a loaded CPU (tiny models on contended
OpenMP threads run many times slower).

Usage: python bench/privacy_audit.py --root . [--buffer s2] [--max-rows 32] [--decoder-steps 100]
       [--gradient-steps 100] [--attacker both] [--figure reports/privacy.png] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cssl_core import layout
from cssl_core.config import ProjectConfig
from cssl_core.config.continual import StageConfig
from cssl_core.config.load import DEFAULT_PARAMS, load_params
from cssl_core.privacy import AuditConfig, FindingClassifier, draw_reconstructions, finding_auc, run_audit
from cssl_core.privacy.common import as_slices, encode
from cssl_core.privacy.linkage import latent_linkage_scores, pixel_linkage_scores, reid_auc
from cssl_core.privacy.victims import held_out_rows
from cssl_core.replay.buffer import load_buffer

MATCH_TOLERANCE = 1e-2  # relative latent error above which a buffer row is "not found" (float16 rounding ~1e-3)


class BenchError(Exception):
    """An expected problem (missing run outputs, a mismatch): one line, no traceback."""


Stages = Mapping[str, StageConfig]


def _stages(root: Path) -> Stages:
    """The continual schedule of the project at `root`, validated as every stage command validates it (a
    ConfigError is a ValueError: one line)."""
    params_path = root / DEFAULT_PARAMS
    if not params_path.is_file():
        raise BenchError(f"{params_path} not found: --root must be a cssl project after a demo run")
    return ProjectConfig.from_params(load_params(params_path), source=str(params_path)).continual.stages


def _windowed(root: Path, cohort: str, window: str) -> tuple[np.ndarray, pd.DataFrame]:
    directory = root / layout.windowed_dir(cohort, window)
    if not (directory / "slices.npy").is_file():
        raise BenchError(f"{directory}/slices.npy not found: run the window stage (the demo run) first")
    return np.load(directory / "slices.npy", mmap_mode="r"), pd.read_parquet(directory / "index.parquet")


def _split_path(root: Path, stage: str) -> Path:
    return root / layout.model_dir(stage) / layout.SPLIT_FILE


def _split(root: Path, stage: str) -> dict[str, list[int]]:
    path = _split_path(root, stage)
    if not path.is_file():
        raise BenchError(f"{path} not found: run pretrain@{stage} (the demo run) first")
    return json.loads(path.read_text())


def _model(root: Path, stage: str) -> torch.nn.Module:
    from cssl_core.models.io import load_model

    directory = root / layout.model_dir(stage)
    if not (directory / "model.pt").is_file():
        raise BenchError(f"{directory}/model.pt not found: run pretrain@{stage} (the demo run) first")
    return load_model(directory)[0].eval()


def _labels(index: pd.DataFrame, rows: np.ndarray, name: str) -> np.ndarray:
    """0/1 where the index knows the finding `has_<name>`, -1 elsewhere (as the export stage stores labels)."""
    column = f"has_{name}"
    if column not in index.columns:
        return np.full(len(rows), -1, np.int8)
    return index[column].iloc[rows].map({True: 1, False: 0}).fillna(-1).astype(np.int8).to_numpy()


def _match_rows(stored: np.ndarray, candidates: np.ndarray, what: str) -> np.ndarray:
    """Position in `candidates` of each stored row (nearest, which must be an exact copy up to float16)."""
    flat_c = candidates.reshape(len(candidates), -1).astype(np.float32)
    positions, worst = [], 0.0
    for row in stored.reshape(len(stored), -1).astype(np.float32):
        errors = np.abs(flat_c - row).max(axis=1)
        best = int(np.argmin(errors))
        worst = max(worst, float(errors[best] / (np.abs(row).max() + 1e-12)))
        positions.append(best)
    if worst > MATCH_TOLERANCE:
        raise BenchError(
            f"{what}: a buffer row matches no training slice (relative error {worst:.3g}); was the buffer written"
            " by these models and these windowed slices?"
        )
    return np.asarray(positions, dtype=np.int64)


def _victims(root: Path, buffer, stages: Stages) -> dict[str, Any]:
    """Scoring side: the true slice, patient and windowed row of every buffer row (found stage by stage)."""
    truth: np.ndarray | None = None
    patient = np.empty(len(buffer), dtype=object)
    source_row = np.zeros(len(buffer), np.int64)
    for stage in dict.fromkeys(buffer.stage.tolist()):
        if stage not in stages:
            raise BenchError(f"the buffer holds rows of stage {stage!r}, which params.yaml does not define")
        block = stages[stage]
        slices, index = _windowed(root, block.cohort, block.window)
        train = np.sort(np.asarray(_split(root, stage)["train_rows"], dtype=np.int64))
        mine = np.flatnonzero(buffer.stage == stage)
        stored = np.asarray(buffer.data[mine])
        if buffer.kind == "latent":
            own_model = _model(root, stage)  # the model that wrote this stage's rows
            candidates = encode(own_model, as_slices(np.asarray(slices[train]), "training slices")).astype(np.float16)
        else:
            candidates = np.asarray(slices[train])
        rows = train[_match_rows(stored, candidates, f"stage {stage}")]
        if truth is None:
            truth = np.zeros((len(buffer), *slices.shape[1:]), np.float32)
        truth[mine] = as_slices(np.asarray(slices[rows]), "training slices")
        patient[mine] = index["patient_key"].iloc[rows].to_numpy()
        source_row[mine] = rows
    return {"truth": truth, "patient": patient, "row": source_row}


def _attacker(
    root: Path, stages: Stages, mode: str, labels: list[str]
) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """The attacker's own slices (never a stage's training rows) and their finding labels, plus what was used."""
    trained_cohorts = {b.cohort for b in stages.values()}
    parts, label_parts, used = [], {name: [] for name in labels}, {}

    def add(name: str, slices: np.ndarray, index: pd.DataFrame, rows: np.ndarray) -> None:
        parts.append(as_slices(np.asarray(slices[rows]), "attacker slices"))
        for label in labels:
            label_parts[label].append(_labels(index, rows, label))
        used[name] = int(rows.size)

    if mode in ("unseen", "both"):
        for directory in sorted((root / layout.WINDOWED).glob("*")):
            meta = directory / "meta.json"
            cohort = json.loads(meta.read_text()).get("cohort", "") if meta.is_file() else ""
            if cohort and cohort not in trained_cohorts and (directory / "slices.npy").is_file():
                slices = np.load(directory / "slices.npy", mmap_mode="r")
                add(directory.name, slices, pd.read_parquet(directory / "index.parquet"), np.arange(len(slices)))
    if mode in ("val", "both"):
        for stage, block in stages.items():
            if not _split_path(root, stage).is_file():
                continue
            rows = _held_out_rows(_split(root, stage))
            if rows.size:
                slices, index = _windowed(root, block.cohort, block.window)
                add(f"{stage}-heldout", slices, index, rows)
    if not parts:
        raise BenchError(f"no attacker slices for --attacker {mode} (no unseen cohort and no held-out patients)")
    return np.concatenate(parts), {name: np.concatenate(v) for name, v in label_parts.items()}, used


def _held_out_rows(split: dict[str, Any]) -> np.ndarray:
    """The rows of a stage's patients that it never trained on (cssl_core.privacy.victims.held_out_rows), as one set."""
    return np.sort(np.concatenate(list(held_out_rows(split).values())))


def _queries(root: Path, buffer, stages: Stages, victims, n_per_group: int, seed: int) -> dict[str, Any]:
    """Members: other slices of buffer patients; non-members: held-out patients, in each buffer stage's window."""
    rng = np.random.default_rng(seed)
    member_parts, outsider_parts = [], []
    for stage in dict.fromkeys(buffer.stage.tolist()):
        block = stages[stage]
        slices, index = _windowed(root, block.cohort, block.window)
        split = _split(root, stage)
        mine = buffer.stage == stage
        in_buffer = set(victims["row"][mine].tolist())
        patients = set(victims["patient"][mine].tolist())
        train = np.asarray(split["train_rows"], dtype=np.int64)
        keys = index["patient_key"].to_numpy()
        others = np.array([r for r in train if keys[r] in patients and r not in in_buffer], dtype=np.int64)
        val = _held_out_rows(split)
        for group, rows in ((member_parts, others), (outsider_parts, val)):
            if rows.size:
                pick = np.sort(rng.choice(rows, size=min(n_per_group, rows.size), replace=False))
                group.append(as_slices(np.asarray(slices[pick]), "query slices"))
    if not member_parts or not outsider_parts:
        return {}
    members, outsiders = np.concatenate(member_parts), np.concatenate(outsider_parts)
    return {
        "queries": np.concatenate([members, outsiders]),
        "is_member": np.arange(len(members) + len(outsiders)) < len(members),
    }


def _other_window_reid(root: Path, buffer, stages: Stages, victims, model, attacker, n_per_group: int, seed: int):
    """The buffer rows' own slices in another window of the same cohort (members) vs held-out patients there."""
    rng = np.random.default_rng(seed + 1)
    members, outsiders = [], []
    for stage in dict.fromkeys(buffer.stage.tolist()):
        block = stages[stage]
        _, index = _windowed(root, block.cohort, block.window)
        own = root / layout.windowed_dir(block.cohort, block.window)
        for directory in sorted(own.parent.glob(layout.windowed_dir(block.cohort, "*").name)):
            if directory == own or not (directory / "slices.npy").is_file():
                continue
            slices, other_index = _windowed(root, block.cohort, directory.name[len(block.cohort) + 1 :])
            keys = ["series_key", "slice_index"]
            lookup = {tuple(k): i for i, k in enumerate(other_index[keys].itertuples(index=False, name=None))}
            rows = victims["row"][buffer.stage == stage]
            mapped = [lookup.get(tuple(k)) for k in index[keys].iloc[rows].itertuples(index=False, name=None)]
            mapped = np.array([m for m in mapped if m is not None], dtype=np.int64)
            val = _held_out_rows(_split(root, stage))
            val_mapped = [lookup.get(tuple(k)) for k in index[keys].iloc[val].itertuples(index=False, name=None)]
            val_mapped = np.array([m for m in val_mapped if m is not None], dtype=np.int64)
            for group, pool in ((members, mapped), (outsiders, val_mapped)):
                if pool.size:
                    pick = np.sort(rng.choice(pool, size=min(n_per_group, pool.size), replace=False))
                    group.append(as_slices(np.asarray(slices[pick]), "query slices"))
            break  # one other window per stage is enough
    if not members or not outsiders:
        return None, 0
    queries = np.concatenate(members + outsiders)
    is_member = np.arange(len(queries)) < sum(len(m) for m in members)
    if buffer.kind == "latent":
        scores = latent_linkage_scores(model, np.asarray(buffer.data), queries, attacker)
    else:
        scores = pixel_linkage_scores(np.asarray(buffer.data), queries, attacker)
    return reid_auc(scores, is_member), int(len(queries))


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root)
    stages = _stages(root)
    buffer_dir = root / layout.buffer_dir(args.buffer)
    meta_path = buffer_dir / "meta.json"
    if not meta_path.is_file():
        raise BenchError(f"{buffer_dir} is not a replay buffer: run export@{args.buffer} (the demo run) first")
    if json.loads(meta_path.read_text()).get("kind") == "none":
        raise BenchError(f"{buffer_dir}: this run's strategy keeps no replay buffer; nothing to audit")
    buffer = load_buffer(buffer_dir)
    model_stage = args.model or str(buffer.stage[0])
    model = _model(root, model_stage) if buffer.kind == "latent" else None

    started = time.perf_counter()
    victims = _victims(root, buffer, stages)
    labels = sorted(buffer.labels)
    attacker, attacker_labels, attacker_used = _attacker(root, stages, args.attacker, labels)
    queries = _queries(root, buffer, stages, victims, args.queries, args.seed)
    scorer_seconds = time.perf_counter() - started

    main_label = _main_label(buffer, attacker_labels, args.finding)
    config = AuditConfig(
        seed=args.seed,
        max_rows=args.max_rows,
        decoder_steps=args.decoder_steps,
        gradient_steps=args.gradient_steps,
        gradient_init=args.gradient_init,
        gradient_lr=args.gradient_lr,
    )
    result = run_audit(
        model,
        buffer,
        victims["truth"],
        attacker,
        config=config,
        attacker_labels=None if main_label is None else attacker_labels[main_label],
        truth_labels=None if main_label is None else np.asarray(buffer.labels[main_label]),
        queries=queries.get("queries"),
        query_is_member=queries.get("is_member"),
    )
    figures = dict(result.figures)
    figures["finding_label"] = main_label
    figures["finding_by_label"] = _findings_by_label(result, buffer, attacker, attacker_labels, config)
    other_auc, other_n = _other_window_reid(root, buffer, stages, victims, model, attacker, args.queries, args.seed)
    figures["reid_auc_other_window"], figures["n_queries_other_window"] = other_auc, other_n
    if args.figure:
        draw_reconstructions(args.figure, result.truth, result.reconstructions, max_rows=4)
    return {
        "bench": "privacy_audit",
        "buffer": args.buffer,
        "model_stage": model_stage,
        "attacker_mode": args.attacker,
        "attacker_slices": attacker_used,
        "config": config.to_dict(),
        "figures": figures,
        "seconds": {**result.seconds, "scorer_setup": round(scorer_seconds, 3)},
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def _main_label(buffer, attacker_labels: dict[str, np.ndarray], wanted: str | None) -> str | None:
    """The finding to report: --finding, else the first label with both classes on both sides."""
    usable = [
        name
        for name in sorted(buffer.labels)
        if {0, 1} <= set(np.asarray(buffer.labels[name]).tolist()) and {0, 1} <= set(attacker_labels[name].tolist())
    ]
    if wanted is not None:
        if wanted not in usable:
            raise BenchError(f"--finding {wanted}: not a label with both classes in the buffer and the attacker data")
        return wanted
    return usable[0] if usable else None


def _findings_by_label(result, buffer, attacker, attacker_labels, config) -> dict[str, dict[str, float | None]]:
    """The finding AUCs (true slices vs each reconstruction) for every label both sides know."""
    out = {}
    for name in sorted(buffer.labels):
        truth_labels = np.asarray(buffer.labels[name])[result.rows]
        if not ({0, 1} <= set(attacker_labels[name].tolist()) and {0, 1} <= set(truth_labels.tolist())):
            continue
        classifier = FindingClassifier(config.finding_pooled_size, config.finding_c)
        classifier.fit(attacker, attacker_labels[name])
        out[name] = {"true": finding_auc(classifier, result.truth, truth_labels)}
        for attacker_name, images in result.reconstructions.items():
            out[name][attacker_name] = finding_auc(classifier, images, truth_labels)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the project directory of a finished demo run")
    parser.add_argument("--buffer", default="s2", help="the stage whose buffer to audit (data/buffers/<stage>)")
    parser.add_argument("--model", default=None, help="the shared model's stage (default: the buffer's first stage)")
    parser.add_argument("--attacker", choices=("unseen", "val", "both"), default="both")
    parser.add_argument("--max-rows", type=int, default=32)
    parser.add_argument("--decoder-steps", type=int, default=100)
    parser.add_argument("--gradient-steps", type=int, default=100)
    parser.add_argument("--gradient-lr", type=float, default=AuditConfig.gradient_lr)
    parser.add_argument("--gradient-init", default="ridge", choices=("ridge", "decoder", "mean"))
    parser.add_argument("--queries", type=int, default=32, help="re-identification queries per group and stage")
    parser.add_argument("--finding", default=None, help="the buffer label to report finding_auc_* for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared, loaded CPU)")
    parser.add_argument("--figure", default=None, help="also draw true vs reconstructed slices to this PNG")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run(args)
    except (BenchError, ValueError) as exc:
        print(f"privacy_audit: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
