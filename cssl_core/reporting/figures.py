"""PNG figures drawn the same way by the per-run `report` stage and by `cssl compare`.

One place sets up matplotlib (headless Agg backend, one dpi) and draws R heatmaps, loss curves and the
2-D embedding of a replay buffer, so a figure in reports/ reads like its per-run counterpart in
data/report/figures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cssl_core.replay.buffer import ReplayBuffer

DPI = 110
MIN_EMBEDDED_ITEMS = 5  # fewer buffer items give no meaningful t-SNE (perplexity must stay below n)
LOSS_COLUMNS = ("loss/mae", "val/mae")  # present for every strategy, so curves compare across strategies


@contextmanager
def figure(path: Path, nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6, 3.5)) -> Iterator[Any]:
    """(fig, axes[nrows][ncols]) on the Agg backend; saved to `path` and closed on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def heatmap(path: Path, matrix: np.ndarray, rows: list[str], cols: list[str], title: str) -> None:
    with figure(path, size=(1.2 + 1.1 * len(cols), 1.0 + 0.8 * len(rows))) as (fig, axes):
        ax = axes[0, 0]
        image = ax.imshow(matrix, cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("after stage")
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)


def parse_history(text: str) -> list[dict[str, float]]:
    """Rows of a pretrain-<stage>-history.csv (one per epoch) as floats; empty cells become nan."""
    return [
        {key: float(value) if value not in ("", None) else float("nan") for key, value in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


def stages_back_to_back(histories: Mapping[str, Sequence[Mapping[str, float]]], column: str) -> np.ndarray:
    """One column of every stage's per-epoch history, stage after stage (nan where a stage lacks it)."""
    return np.array([row.get(column, float("nan")) for stage in histories for row in histories[stage]], dtype=float)


def draw_loss_curves(ax: Any, histories: Mapping[str, Sequence[Mapping[str, float]]], columns: Sequence[str]) -> None:
    """Per-epoch losses of every stage back to back, with a dotted line where a new stage starts."""
    offset = 0
    for stage, records in histories.items():
        if not records:
            continue
        for column in [c for c in columns if c in records[0]]:
            values = [row[column] for row in records]
            ax.plot(range(offset + 1, offset + len(values) + 1), values, label=f"{stage} {column}")
        offset += len(records)
        ax.axvline(offset + 0.5, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("epoch (stages back to back)")
    ax.set_ylabel("loss")


def buffer_features(buffer: ReplayBuffer) -> np.ndarray:
    """One vector per buffer item: mean-pooled latent tokens, or the slice downsampled 4x per side."""
    data = np.asarray(buffer.data, dtype=np.float32)
    return data.mean(axis=1) if buffer.kind == "latent" else data[:, ::4, ::4].reshape(len(data), -1)


def draw_buffer_embedding(ax: Any, buffer: ReplayBuffer | None, seed: int, title: str) -> bool:
    """2-D t-SNE of a replay buffer's items coloured by the stage that stored them; False when too small."""
    from sklearn.manifold import TSNE

    if buffer is None or len(buffer) < MIN_EMBEDDED_ITEMS:
        ax.set_axis_off()
        ax.set_title(f"{title}: no buffer", fontsize=9)
        return False
    features = buffer_features(buffer)
    perplexity = min(30, len(features) - 1)
    embedding = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(features)
    stages = np.asarray(buffer.stage)
    for stage in sorted(set(stages.tolist())):
        chosen = stages == stage
        ax.scatter(embedding[chosen, 0], embedding[chosen, 1], s=8, label=stage)
    ax.set_title(f"{title} ({buffer.kind}, {len(features)} items)", fontsize=9)
    ax.legend(fontsize=7)
    return True
