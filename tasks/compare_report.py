"""reports/compare.md: tables over strategies x seeds, plus plots, from the experiments' report metrics.

Every number is mean +- sd over the seeds that finished; a variant with failed seeds says so in its row.
Figures come from what each experiment wrote: its metrics (R matrices), its per-epoch loss histories and
its final replay buffer (read back through `flows.experiment_files`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cssl_core.replay.buffer import ReplayBuffer
from tasks.figures import (
    LOSS_COLUMNS,
    MIN_EMBEDDED_ITEMS,
    draw_buffer_embedding,
    figure,
    heatmap,
    parse_history,
    stages_back_to_back,
)
from tasks.report import matrix_from_tree, ordered_names

HEADLINE = "linear@1.0"
PROBES = ("linear", "attentive", "token")

Seeds = list[tuple[int, dict[str, Any] | None]]  # (seed, metrics or None when that run failed)


class RunFiles(Protocol):
    """What the report needs from a finished experiment beyond its metrics (see flows.experiment_files)."""

    def text(self, name: str, path: str) -> str | None: ...

    def buffer(self, name: str, stage: str) -> ReplayBuffer | None: ...


def _get(metrics: dict[str, Any], *keys: str) -> float:
    node: Any = metrics
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    return float(node) if isinstance(node, int | float) and node is not None else float("nan")


def _fmt(values: list[float], digits: int = 3) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{np.mean(finite):.{digits}f} ± {np.std(finite, ddof=1):.{digits}f}"


def _nanmean(values, axis: int | None = None):
    """Mean ignoring nan; nan (and no warning) where every value is nan, e.g. R cells never evaluated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _final_row(metrics: dict[str, Any], key: str, column: int) -> float:
    matrix = matrix_from_tree(metrics, key)
    return float(matrix[-1, column]) if matrix is not None else float("nan")


def main_table(variants: dict[str, Seeds], tasks: list[str]) -> list[str]:
    header = (
        ["strategy", "keeps raw images", "seeds ok/failed"]
        + [f"{t} AUC" for t in tasks]
        + [
            "avg AUC",
            "BWT AUC",
            "FWT AUC",
            "recon final",
            "recon forgetting",
            "CKA BWT",
            "steps",
            "train s",
            "buffer bytes",
        ]
    )
    rows = []
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        failed = [s for s, m in seeds if not m]
        if not ok:
            rows.append([variant, "?", f"0/{len(failed)} (failed: seeds {failed})"] + ["n/a"] * (len(header) - 3))
            continue
        rows.append(
            [
                variant,
                str(ok[0].get("cost", {}).get("keeps_raw_images", "?")).lower(),
                f"{len(ok)}/{len(failed)}" + (f" (failed: seeds {failed})" if failed else ""),
                *(_fmt([_final_row(m, HEADLINE, j) for m in ok]) for j in range(len(tasks))),
                _fmt([_get(m, HEADLINE, "average_final") for m in ok]),
                _fmt([_get(m, HEADLINE, "bwt") for m in ok]),
                _fmt([_get(m, HEADLINE, "fwt") for m in ok]),
                _fmt([_get(m, "recon", "average_final") for m in ok], 4),
                _fmt([_get(m, "recon", "bwt") for m in ok], 4),
                _fmt([_get(m, "cka", "bwt") for m in ok]),
                _fmt([_get(m, "cost", "steps") for m in ok], 0),
                _fmt([_get(m, "cost", "train_seconds") for m in ok], 0),
                _fmt([_get(m, "cost", "buffer_bytes") for m in ok], 0),
            ]
        )
    return _table(header, rows)


def probe_table(variants: dict[str, Seeds], tasks: list[str], fraction: str = "1.0") -> list[str]:
    """Average final AUC and BWT of every probe, with the random-encoder and raw-pixel references."""
    probes = [p for p in PROBES if any(f"{p}@{fraction}" in m for seeds in variants.values() for _, m in seeds if m)]
    header = ["strategy"] + [f"{p} {what}" for p in probes for what in ("avg AUC", "BWT")]
    rows = []
    every_run = [m for seeds in variants.values() for _, m in seeds if m]
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        cells = [variant]
        for probe in probes:
            key = f"{probe}@{fraction}"
            cells += [_fmt([_get(m, key, "average_final") for m in ok]), _fmt([_get(m, key, "bwt") for m in ok])]
        rows.append(cells)

    def reference(*path: str) -> str:
        # the same seed gives the same random encoder and pixels in every variant: average per run
        return _fmt([float(_nanmean([_get(m, *path, t) for t in tasks])) for m in every_run])

    random_encoder = [reference(f"{p}@{fraction}", "random_encoder") for p in probes]
    rows.append(["(random encoder)"] + [c for value in random_encoder for c in (value, "")])
    pixels = reference(f"pixels@{fraction}", "per_task")
    rows.append(["(raw pixels, linear)"] + [c for p in probes for c in (pixels if p == "linear" else "", "")])
    return _table(header, rows)


def recon_heatmaps(figures: Path, variants: dict[str, Seeds], stages: list[str]) -> None:
    for variant, seeds in variants.items():
        recon = [r for r in (matrix_from_tree(m, "recon") for _, m in seeds if m) if r is not None]
        if recon:
            mean = _nanmean(np.stack(recon), axis=0)
            heatmap(figures / f"R_recon_{variant}.png", mean, stages, stages, f"{variant}: reconstruction loss")


def auc_per_stage(path: Path, variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> None:
    """Linear AUC after each stage, one line per strategy, one panel per task."""
    with figure(path, 1, len(tasks), size=(3.2 * len(tasks), 3)) as (_, axes):
        for j, task in enumerate(tasks):
            ax = axes[0, j]
            for variant, seeds in variants.items():
                mats = [r for r in (matrix_from_tree(m, HEADLINE) for _, m in seeds if m) if r is not None]
                if mats:
                    ax.plot(stages, _nanmean(np.stack(mats), axis=0)[:, j], marker="o", label=variant)
            ax.set_title(task, fontsize=9)
            ax.set_ylim(0.3, 1.0)
            ax.set_xlabel("after stage")
        axes[0, 0].set_ylabel("linear probe AUC")
        axes[0, -1].legend(fontsize=6)


def loss_curves(path: Path, runs, files: RunFiles, stages: list[str]) -> bool:
    """Per-epoch MAE loss (training) and validation MAE, stages back to back, mean over seeds per strategy."""
    curves: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, variant, _, _ in runs:
        histories = {}
        for stage in stages:
            text = files.text(name, f"data/metrics/pretrain-{stage}-history.csv")
            if text:
                histories[stage] = parse_history(text)
        if len(histories) == len(stages):
            for column in LOSS_COLUMNS:
                curves.setdefault(variant, {}).setdefault(column, []).append(stages_back_to_back(histories, column))
    if not curves:
        return False
    with figure(path, 1, len(LOSS_COLUMNS), size=(5.2 * len(LOSS_COLUMNS), 3.4)) as (_, axes):
        for k, column in enumerate(LOSS_COLUMNS):
            ax = axes[0, k]
            for variant, by_column in curves.items():
                lengths = {len(c) for c in by_column[column]}
                if len(lengths) == 1:  # seeds of one variant share the epoch schedule
                    ax.plot(
                        np.arange(1, lengths.pop() + 1), _nanmean(np.stack(by_column[column]), axis=0), label=variant
                    )
            ax.set_title(f"{column} (stages {', '.join(stages)} back to back)", fontsize=9)
            ax.set_xlabel("epoch")
        axes[0, 0].set_ylabel("loss")
        axes[0, -1].legend(fontsize=6)
    return True


def buffer_embeddings(path: Path, variants: dict[str, Seeds], files: RunFiles, last_stage: str, runs) -> bool:
    """t-SNE of the final replay buffer of each strategy that keeps one (first finished seed)."""
    first_ok = {}
    for name, variant, seed, _ in runs:
        if variant not in first_ok and any(s == seed and m for s, m in variants[variant]):
            first_ok[variant] = (name, seed)
    buffers = {}
    for variant, (name, seed) in first_ok.items():
        buffer = files.buffer(name, last_stage)
        if buffer is not None and len(buffer) >= MIN_EMBEDDED_ITEMS:
            buffers[variant] = (buffer, seed)
    if not buffers:
        return False
    ncols = min(4, len(buffers))
    nrows = math.ceil(len(buffers) / ncols)
    with figure(path, nrows, ncols, size=(4.2 * ncols, 3.8 * nrows)) as (_, axes):
        for k, (variant, (buffer, seed)) in enumerate(buffers.items()):
            draw_buffer_embedding(axes[k // ncols, k % ncols], buffer, seed, f"{variant} s{seed}")
        for k in range(len(buffers), nrows * ncols):
            axes[k // ncols, k % ncols].set_axis_off()
    return True


def write_report(
    out_dir: Path,
    runs,
    results: dict[str, dict[str, Any] | None],
    params: dict[str, Any],
    config: str,
    elapsed: float | None,
    files: RunFiles | None = None,
) -> Path:
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):  # figures of an earlier comparison must not be listed as this one's
        old.unlink()
    variants: dict[str, Seeds] = {}
    for name, variant, seed, _ in runs:
        variants.setdefault(variant, []).append((seed, results.get(name)))

    first = next((m for _, seeds in variants.items() for _, m in seeds if m), {})
    tasks, stages = ordered_names(first, "tasks"), ordered_names(first, "stages")
    recon_heatmaps(figures, variants, stages)
    if tasks and stages:
        auc_per_stage(figures / "auc_per_stage.png", variants, tasks, stages)
    if files is not None and stages:
        loss_curves(figures / "loss_curves.png", runs, files, stages)
        buffer_embeddings(figures / "buffer_tsne.png", variants, files, stages[-1], runs)

    config_block = params["compare"]["configs"][config]
    text = [
        "# Strategy comparison",
        "",
        f"Config `{config}`: seeds {config_block['seeds']}, overrides `{config_block.get('overrides', {})}`; every "
        "variant trains the same epochs x steps on the new data of each stage (replay batches come on top).",
        f"Measured wall time of the whole comparison: {elapsed / 60:.1f} min." if elapsed else "",
        "",
        "AUC columns: linear probe on pooled tokens with all training labels, encoder after the last stage, "
        "patient-level folds. BWT < 0 = forgetting; FWT = after the previous stage vs the random encoder. "
        "recon: masked-reconstruction loss with each stage's own decoder on its held-out slices (lower is "
        "better); recon forgetting > 0 = worse than right after that stage. steps: optimiser steps over all "
        "stages (equal budgets; replay batches ride on the same steps).",
        "",
        *main_table(variants, tasks),
        "",
        "## Every probe",
        "",
        "Average over tasks of the final AUC (encoder after the last stage) and its BWT, per probe: linear on "
        "pooled tokens, attentive (learned query over the tokens), token (one prediction per patch against the "
        "lesion masks). References on the same folds: the random encoder of `evaluate-init`, and a linear probe "
        "on raw downsampled pixels.",
        "",
        *probe_table(variants, tasks),
        "",
        "Figures: " + ", ".join(f"[{p.name}](figures/{p.name})" for p in sorted(figures.glob("*.png"))),
        "",
        "Per-run R heatmaps of every probe are written by each experiment's `report` stage (data/report/figures) "
        "and logged to its MLflow run.",
    ]
    out = out_dir / "compare.md"
    out.write_text("\n".join(text) + "\n")
    return out
