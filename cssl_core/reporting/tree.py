"""The report's metric tree: what data/summary/metrics.json holds, and the helpers that read it back.

DVC metrics (and `dvc exp show`) keep dicts of numbers but drop lists and nulls, so the report stores its R
matrices as nested dicts (R[stage_i][task_j]) with the name order as {name: position}. The per-run `report`
stage (tasks/report.py) writes the tree; `cssl summary` and `cssl compare` (flows/) read it, and the tree of an
experiment from `dvc exp show`, back into matrices. One module for both directions keeps them in step.

Pure functions over dicts: nothing here reads a file (timings_from_metrics is handed the records' contents).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from cssl_core.evaluation.continual import LABEL_FREE_FAMILIES
from cssl_core.layout import METRICS


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    return value


def as_metric_tree(summary: dict[str, Any]) -> dict[str, Any]:
    """Matrices and name lists as nested dicts: DVC metrics (and `dvc exp show`) keep dicts of numbers but
    drop lists and nulls, so R[i][j] is stored as R[stage_i][task_j] and a missing cell is simply absent."""
    stages, tasks = summary["stages"], summary["tasks"]
    tree: dict[str, Any] = {
        "stages": {s: i for i, s in enumerate(stages)},
        "tasks": {t: j for j, t in enumerate(tasks)},
    }
    for key, block in summary.items():
        if key in ("stages", "tasks") or not isinstance(block, dict):
            tree[key] = block
            continue
        out = dict(block)
        if "R" in block:
            cols = stages if key in LABEL_FREE_FAMILIES else tasks
            out["R"] = {row: {col: block["R"][i][j] for j, col in enumerate(cols)} for i, row in enumerate(stages)}
        if "random_encoder" in block:
            out["random_encoder"] = dict(zip(tasks, block["random_encoder"], strict=True))
        tree[key] = out
    return _clean(tree)


def ordered_names(tree: dict[str, Any], kind: str) -> list[str]:
    """Stage or task names, in order, of a metric tree."""
    value = tree.get(kind) or ""
    names = [name for name in value.split(",") if name] if isinstance(value, str) else list(value)
    if names:
        return names
    # older trees: recover the order from the matrices themselves
    found: list[str] = []
    for key, block in tree.items():
        wanted = key == "recon" if kind == "stages" else "@" in key
        if wanted and isinstance(block, dict) and isinstance(block.get("R"), dict):
            for row_name, row in block["R"].items():
                for name in [row_name] if kind == "stages" else list(row):
                    if name not in found:
                        found.append(name)
    return found


def matrix_from_tree(tree: dict[str, Any], key: str) -> np.ndarray | None:
    """The R matrix `key` of a metric tree back as an array (nan where a cell is absent)."""
    block = tree.get(key)
    if not isinstance(block, dict) or not isinstance(block.get("R"), dict):
        return None
    rows = ordered_names(tree, "stages")
    cols = rows if key in LABEL_FREE_FAMILIES else ordered_names(tree, "tasks")
    return np.array(
        [[np.nan if block["R"].get(r, {}).get(c) is None else float(block["R"][r][c]) for c in cols] for r in rows],
        dtype=float,
    )


TIMING_KEYS = {"pretrain": "train_seconds", "export": "seconds", "evaluate": "seconds"}  # record kind -> its key
_RECORD = re.compile(rf"(?:.*/)?{re.escape(METRICS.as_posix())}/(pretrain|export|evaluate)-([^/]+)\.json")


def timings_from_metrics(files: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Training, export and evaluation seconds summed over the per-stage run records in data/metrics
    (path -> content, e.g. what `dvc exp show` returns for an experiment). Timings live only there and in
    MLflow: never in a file another stage depends on, so re-running a stage changes no later stage's input."""
    totals: dict[str, float] = {}
    for path, content in files.items():
        found = _RECORD.fullmatch(path.replace("\\", "/"))
        if not found or not isinstance(content, dict):
            continue
        kind = found.group(1)
        value = content.get(TIMING_KEYS[kind])
        if kind == "pretrain" and value is None:
            value = content.get("seconds_this_run")
        if isinstance(value, int | float) and math.isfinite(float(value)):
            name = {"pretrain": "train_seconds", "export": "export_seconds", "evaluate": "eval_seconds"}[kind]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals
