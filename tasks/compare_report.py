"""reports/compare.md: one table over strategies x seeds, plus plots, from the experiments' report metrics.

Every number is mean +- sd over the seeds that finished; a variant with failed seeds says so in its row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

HEADLINE = "linear@1.0"


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


def _matrix(metrics: dict[str, Any], key: str) -> np.ndarray | None:
    from tasks.report import matrix_from_tree

    return matrix_from_tree(metrics, key)


def write_report(
    out_dir: Path,
    runs,
    results: dict[str, dict[str, Any] | None],
    params: dict[str, Any],
    config: str,
    elapsed: float | None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    variants: dict[str, list[tuple[int, dict[str, Any] | None]]] = {}
    for name, variant, seed, _ in runs:
        variants.setdefault(variant, []).append((seed, results.get(name)))
    from tasks.report import heatmap, ordered_names

    first = next((m for _, seeds in variants.items() for _, m in seeds if m), {})
    tasks, stages = ordered_names(first, "tasks"), ordered_names(first, "stages")

    header = (
        ["strategy", "keeps raw images", "seeds ok/failed"]
        + [f"{t} AUC" for t in tasks]
        + ["avg AUC", "BWT AUC", "FWT AUC", "recon final", "recon forgetting", "CKA BWT", "train s", "buffer bytes"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        failed = [s for s, m in seeds if not m]
        if not ok:
            lines.append(f"| {variant} | ? | 0/{len(failed)} (failed: seeds {failed}) |" + " n/a |" * (len(header) - 3))
            continue
        per_task = []
        for j in range(len(tasks)):
            values = []
            for m in ok:
                matrix = _matrix(m, HEADLINE)
                values.append(float(matrix[-1, j]) if matrix is not None else float("nan"))
            per_task.append(_fmt(values))
        row = [
            variant,
            str(ok[0].get("cost", {}).get("keeps_raw_images", "?")).lower(),
            f"{len(ok)}/{len(failed)}" + (f" (failed: {failed})" if failed else ""),
            *per_task,
            _fmt([_get(m, HEADLINE, "average_final") for m in ok]),
            _fmt([_get(m, HEADLINE, "bwt") for m in ok]),
            _fmt([_get(m, HEADLINE, "fwt") for m in ok]),
            _fmt([_get(m, "recon", "average_final") for m in ok], 4),
            _fmt([_get(m, "recon", "bwt") for m in ok], 4),
            _fmt([_get(m, "cka", "bwt") for m in ok]),
            _fmt([_get(m, "cost", "train_seconds") for m in ok], 0),
            _fmt([_get(m, "cost", "buffer_bytes") for m in ok], 0),
        ]
        lines.append("| " + " | ".join(row) + " |")

        recon = [r for r in (_matrix(m, "recon") for m in ok) if r is not None]
        if recon:
            mean = np.nanmean(np.stack(recon), axis=0)
            heatmap(figures / f"R_recon_{variant}.png", mean, stages, stages, f"{variant}: reconstruction loss")

    # metric per stage per task: linear AUC after each stage, one line per strategy
    if tasks and stages:
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
        for j, task in enumerate(tasks):
            ax = axes[0, j]
            for variant, seeds in variants.items():
                mats = [r for r in (_matrix(m, HEADLINE) for _, m in seeds if m) if r is not None]
                if mats:
                    ax.plot(stages, np.nanmean(np.stack(mats), axis=0)[:, j], marker="o", label=variant)
            ax.set_title(task, fontsize=9)
            ax.set_ylim(0.3, 1.0)
            ax.set_xlabel("after stage")
        axes[0, 0].set_ylabel("linear probe AUC")
        axes[0, -1].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(figures / "auc_per_stage.png", dpi=110)
        plt.close(fig)

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
        "better); recon forgetting > 0 = worse than right after that stage.",
        "",
        *lines,
        "",
        "Figures: " + ", ".join(f"[{p.name}](figures/{p.name})" for p in sorted(figures.glob("*.png"))),
        "",
        "Per-run loss curves, R heatmaps of every probe and a t-SNE of the replay buffer are written by each "
        "experiment's `report` stage (data/report/figures) and logged to its MLflow run.",
    ]
    out = out_dir / "compare.md"
    out.write_text("\n".join(text) + "\n")
    return out
