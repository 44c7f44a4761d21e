"""Stage `report`: the evaluation rows of every stage -> R matrices, continual metrics, plots, registry.

R[i][j] = metric of the encoder after stage i on stage/task j, one matrix per family: reconstruction loss
(with stage j's decoder, and with the model's own) and CKA (label-free, j over stages), and each probe (j
over labelled tasks). From each: average final value, backward transfer (forgetting) and forward transfer
(against the random encoder of `evaluate-init`).
Written as a DVC metric (data/summary/metrics.json), DVC plot data (CSV) and PNG figures; the final
encoder is registered in MLflow as `cssl-encoder` (a new version only when its weights changed), alias
`best` on the version with the best average final linear-probe AUC. Every output is fixed by the inputs:
timings live in data/metrics and MLflow, so a forced re-run rewrites identical files.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.evaluation.continual import LABEL_FREE_FAMILIES
from cssl_core.layout import (
    INIT,
    METRICS,
    REPORT,
    SUMMARY,
    SUMMARY_METRICS,
    buffer_dir,
    eval_row,
    metrics_path,
    model_dir,
)
from cssl_core.models.io import encoder_digest, load_model
from cssl_core.reporting.figures import (
    MIN_EMBEDDED_ITEMS,
    draw_buffer_embedding,
    draw_loss_curves,
    figure,
    heatmap,
    parse_history,
)
from cssl_core.reporting.tree import as_metric_tree, timings_from_metrics
from tasks import tracking

HEADLINE_FRACTION = "1.0"


def load_rows(config: ProjectConfig) -> tuple[list[str], dict[str, dict[str, Any]]]:
    stages = config.continual.ordered_stages()
    rows = {}
    for name in [INIT, *stages]:
        path = eval_row(name)
        if not path.exists():
            raise FileNotFoundError(f"{path}: run evaluate@{name} first (dvc repro)")
        rows[name] = json.loads(path.read_text())
    return stages, rows


def label_free_matrix(stages: list[str], rows: dict[str, Any], family: str) -> np.ndarray:
    matrix = np.full((len(stages), len(stages)), np.nan)
    for i, trained in enumerate(stages):
        for j, measured in enumerate(stages):
            value = rows[trained].get(family, {}).get(measured)
            if value is not None:
                matrix[i, j] = value
    return matrix


def task_stage_index(config: ProjectConfig, stages: list[str]) -> dict[str, int]:
    """The stage each task measures: the one it names (`stage`), else the one that trains on its cohort and window
    (-1: no stage does)."""
    owner = {}
    for task, block in config.eval.tasks.items():
        owner[task] = -1
        if block.stage is not None:
            owner[task] = stages.index(block.stage) if block.stage in stages else -1
            continue
        for index, stage in enumerate(stages):
            paths = config.continual.paths(stage)
            if (paths.cohort, paths.window) == (block.cohort, block.window):
                owner[task] = index
                break
    return owner


def probe_matrix(stages, rows, tasks, probe, fraction, metric="auc") -> tuple[np.ndarray, np.ndarray]:
    def value(row: dict[str, Any], task: str) -> float:
        got = row["probes"].get(probe, {}).get(task, {}).get(fraction, {}).get(metric)
        return float("nan") if got is None else float(got)

    matrix = np.array([[value(rows[s], t) for t in tasks] for s in stages], dtype=float)
    reference = np.array([value(rows[INIT], t) for t in tasks], dtype=float)
    return matrix, reference


def _local_records() -> dict[str, dict[str, Any]]:
    return {path.as_posix(): json.loads(path.read_text()) for path in sorted(METRICS.glob("*.json"))}


def stage_costs(stages: list[str]) -> dict[str, Any]:
    """Deterministic cost of the run: training steps, final buffer bytes and kind, raw images kept.

    Steps and buffer size are read from the run records in data/metrics, which `report` does not depend on
    (their timings change at every run); both are fixed by the models and buffers it does depend on.
    Timings are not part of the summary: see timings_from_metrics."""

    def record(kind: str, stage: str) -> dict[str, Any]:
        path = metrics_path(kind, stage)
        return json.loads(path.read_text()) if path.exists() else {}

    pretrain = [record("pretrain", s) for s in stages]
    export = [record("export", s) for s in stages]
    _, description = load_model(model_dir(stages[-1]))
    return {
        "steps": int(sum(m.get("steps", 0) for m in pretrain)),
        "buffer_bytes": int(export[-1].get("buffer_bytes", 0)) if export else 0,
        "buffer_kind": export[-1].get("kind", "none") if export else "none",
        "keeps_raw_images": bool(description.get("keeps_raw_images", False)),
    }


def summarise(config: ProjectConfig) -> dict[str, Any]:
    stages, rows = load_rows(config)
    return summary_from_rows(config, stages, rows, stage_costs(stages))


def summary_from_rows(
    config: ProjectConfig, stages: list[str], rows: dict[str, dict[str, Any]], cost: dict[str, Any]
) -> dict[str, Any]:
    """The summary of the evaluation `rows` (stage name -> data/eval row, init included) and the run's `cost`:
    summarise without the disk, so the R matrices and their averages are tested on in-memory rows."""
    from cssl_core.evaluation import average_final, backward_transfer, forgetting_since_trained, forward_transfer

    tasks = list(config.eval.tasks)
    owners = task_stage_index(config, stages)
    task_stage = np.array([owners[t] for t in tasks])
    stage_index = np.arange(len(stages))
    summary: dict[str, Any] = {"stages": stages, "tasks": tasks, "strategy": config.ssl.strategy}
    # which stage trains on each task's cohort and window (-1: none), so `cssl compare` can tell a stage's own
    # tasks (plasticity, forgetting) from the others without the config of each experiment
    summary["task_stage"] = {task: int(owners[task]) for task in tasks}
    for family, higher in LABEL_FREE_FAMILIES.items():
        matrix = label_free_matrix(stages, rows, family)
        summary[family] = {
            "R": matrix,
            "average_final": average_final(matrix),
            "bwt": backward_transfer(matrix, stage_index),
            "forgetting": forgetting_since_trained(matrix, stage_index, higher_is_better=higher),
        }
    summary["cost"] = cost
    probes = list(config.eval.probes) + ["pixels"]
    for probe in probes:
        for fraction in (str(f) for f in config.eval.fractions):
            matrix, reference = probe_matrix(stages, rows, tasks, probe, fraction)
            if np.isnan(matrix).all() and np.isnan(reference).all():
                continue
            key = f"{probe}@{fraction}"
            if probe == "pixels":  # the reference probe on raw downsampled pixels: one value per task
                summary[key] = {"per_task": dict(zip(tasks, reference, strict=True))}
                continue
            summary[key] = {"R": matrix, "random_encoder": reference}
            summary[key].update(
                {
                    "average_final": average_final(matrix),
                    "bwt": backward_transfer(matrix, task_stage),
                    "forgetting": forgetting_since_trained(matrix, task_stage, higher_is_better=True),
                    "fwt": forward_transfer(matrix, reference, task_stage),
                }
            )
    return summary


def _loss_curves(path: Path, stages: list[str]) -> None:
    histories = {}
    for stage in stages:
        history = metrics_path("pretrain", stage, "-history.csv")
        if history.exists():
            histories[stage] = parse_history(history.read_text())
    with figure(path) as (_, axes):
        columns = sorted({c for rows in histories.values() if rows for c in rows[0] if c.startswith("loss/")})
        draw_loss_curves(axes[0, 0], histories, [*columns, "val/mae"])
        axes[0, 0].legend(fontsize=6)


def _buffer_embedding(path: Path, last_stage: str, seed: int) -> bool:
    """2-D t-SNE of the final replay buffer (pooled latents or downsampled slices), coloured by stage."""
    from cssl_core.replay.directory import read_buffer

    buffer = read_buffer(buffer_dir(last_stage))
    if buffer is None or len(buffer) < MIN_EMBEDDED_ITEMS:
        return False
    with figure(path, size=(4.5, 4)) as (_, axes):
        return draw_buffer_embedding(axes[0, 0], buffer, seed, "replay buffer t-SNE")


def _write_plot_data(summary: dict[str, Any]) -> None:
    stages, tasks = summary["stages"], summary["tasks"]
    with (SUMMARY / "recon.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trained_after", "evaluated_on", "recon_loss", "recon_own_loss"])
        for i, trained in enumerate(stages):
            for j, measured in enumerate(stages):
                writer.writerow([trained, measured, summary["recon"]["R"][i, j], summary["recon_own"]["R"][i, j]])
    key = f"linear@{HEADLINE_FRACTION}"
    with (SUMMARY / "probe_linear.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trained_after", "task", "auc"])
        for i, trained in enumerate(stages):
            for j, task in enumerate(tasks):
                value = summary[key]["R"][i, j] if key in summary else float("nan")
                writer.writerow([trained, task, value])


def register_final_encoder(stage: str, score: float) -> str | None:
    """Register the final encoder as `cssl-encoder` (a new version only when its weights are new), tag it with
    its score, point `newest` at it and `best` at the best-scoring version (tasks/tracking.py)."""
    model, _ = load_model(model_dir(stage))
    model.eval()
    return tracking.register_encoder(model, encoder_digest(model), score)


def _headline(block: dict[str, Any]) -> str:
    shown = [f"{name}={float(block[name]):.4g}" for name in ("average_final", "bwt") if name in block]
    return " ".join(shown)


def run_report(config: ProjectConfig) -> dict[str, Any]:
    """Figures, plot data and data/summary/metrics.json (fixed by the evaluation rows, models and buffers, so a
    forced re-run rewrites identical files), then the registry; timings go to the MLflow run only."""
    from cssl_core.evaluation import Progress

    summary = summarise(config)
    figures = REPORT / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    SUMMARY.mkdir(parents=True, exist_ok=True)
    stages, tasks = summary["stages"], summary["tasks"]
    probe_keys = [k for k in summary if "@" in k and not k.startswith("pixels")]
    register = config.eval.register
    progress = Progress("report", "step", len(LABEL_FREE_FAMILIES) + len(probe_keys) + 3 + int(register))
    with tracking.stage_run("report", {"strategy": summary["strategy"], "stages": ",".join(stages)}):
        for family in LABEL_FREE_FAMILIES:
            heatmap(
                figures / f"R_{family}.png", summary[family]["R"], stages, stages, f"{summary['strategy']}: {family}"
            )
            progress.step(f"R {family} {_headline(summary[family])}")
        for key in probe_keys:
            heatmap(
                figures / f"R_{key.replace('@', '_')}.png",
                summary[key]["R"],
                stages,
                tasks,
                f"{summary['strategy']}: {key} AUC",
            )
            progress.step(f"R {key} AUC {_headline(summary[key])}")
        _loss_curves(figures / "loss_curves.png", stages)
        progress.step("loss curves")
        drawn = _buffer_embedding(figures / "buffer_tsne.png", stages[-1], config.eval.seed)
        progress.step("replay buffer t-SNE" if drawn else f"replay buffer t-SNE skipped (< {MIN_EMBEDDED_ITEMS} items)")
        _write_plot_data(summary)
        cleaned = as_metric_tree(summary)
        write_json(SUMMARY_METRICS, cleaned, sort_keys=False)  # the tree's order is the stages' and tasks' order
        progress.step(f"{SUMMARY_METRICS}")
        flat = {}
        for key, block in summary.items():
            if isinstance(block, dict):
                for name in ("average_final", "bwt", "forgetting", "fwt"):
                    if name in block and math.isfinite(float(block[name])):
                        flat[f"{key.replace('@', '_')}.{name}"] = float(block[name])
        flat.update({f"cost.{name}": value for name, value in timings_from_metrics(_local_records()).items()})
        tracking.log_metrics(flat)
        tracking.log_artifacts(figures, "figures")
        tracking.log_artifact(SUMMARY_METRICS)
        headline = summary.get(f"linear@{HEADLINE_FRACTION}", {}).get("average_final", float("nan"))
        if register:
            cleaned["registered_version"] = register_final_encoder(stages[-1], float(headline))
            progress.step(f"registry: {tracking.MODEL_NAME} version {cleaned['registered_version']}")
    return cleaned
