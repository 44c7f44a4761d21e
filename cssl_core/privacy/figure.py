"""The picture that makes the privacy figures concrete: true slices beside what each attacker got back.

A reader believes "SSIM 0.94" when they see it. The figure carries no identifier of any kind: rows are
"sample 1..k" (positions in the drawn selection, not buffer rows, stages or patients), columns are attacker
names, and each panel's SSIM is the only text.

Drawn on a standalone Agg figure (no pyplot), so a headless stage or a test never touches a display or the
process-wide matplotlib backend. Written to a temporary sibling and renamed: no half-written PNG.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cssl_core.privacy.common import as_slices
from cssl_core.privacy.scoring import score

DPI = 110
PANEL_INCHES = 1.6


def draw_reconstructions(
    path: str | os.PathLike[str],
    truth: np.ndarray,
    reconstructions: Mapping[str, np.ndarray],
    max_rows: int = 4,
) -> Path:
    """Save a grid: one row per sample (the first `max_rows`), the true slice then each attacker's output.

    Args:
        path: the PNG to write (parent directories are created).
        truth: (n, S, S) the true slices (scoring side: this figure necessarily shows them).
        reconstructions: attacker name -> (n, S, S) reconstructions aligned with `truth`.
        max_rows: how many samples to draw (>= 1).
    Returns:
        The path written.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if not reconstructions:
        raise ValueError("need at least one attacker's reconstructions to draw")
    true = as_slices(truth, "true slices")
    k = min(max_rows, true.shape[0])
    columns = [("true", true[:k], None)]
    for name, images in reconstructions.items():
        recon = as_slices(images, f"{name} reconstructions")
        if recon.shape != true.shape:
            raise ValueError(f"{name} reconstructions {recon.shape} must align with the true slices {true.shape}")
        columns.append((str(name), recon[:k], score(recon[:k], true[:k])["ssim"]))

    fig = Figure(figsize=(PANEL_INCHES * len(columns), PANEL_INCHES * k + 0.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(k, len(columns), squeeze=False)
    for j, (name, images, ssim) in enumerate(columns):
        for i in range(k):
            ax = axes[i, j]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if ssim is not None:
                ax.set_xlabel(f"SSIM {ssim[i]:.2f}", fontsize=7)
            if i == 0:
                ax.set_title(name, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"sample {i + 1}", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def draw_note(path: str | os.PathLike[str], text: str) -> Path:
    """A text-only panel where there is nothing to draw (a strategy without a buffer): the stage's figure is a
    declared output, and a reader opening it should learn why it is empty rather than find it missing."""
    fig = Figure(figsize=(4.0, 1.0))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True)
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp.png", dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
