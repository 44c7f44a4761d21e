"""A stage's training history as files: the per-epoch CSV and the summary DVC tracks as a metric.

Why the whole history: a stage resumed from checkpoints (or reused without training) must still report the
training of every epoch, not the last invocation's few seconds.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from cssl_core.train.loop import TrainResult


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """One row per epoch, every metric any epoch reported as a column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["epoch", *sorted({key for row in history for key in row})]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for epoch, row in enumerate(history, start=1):
            writer.writerow({"epoch": epoch, **{k: f"{v:.6g}" for k, v in row.items()}})


def stage_summary(result: TrainResult, seconds: float, steps_per_epoch: int) -> dict[str, Any]:
    """The last epoch's losses, throughput averaged over epochs, and what this invocation did."""
    history = result.history
    last = history[-1]
    summary = {key.replace("/", "_"): value for key, value in last.items() if key.startswith(("loss/", "val/"))}
    summary.update(
        {
            "epochs": len(history),
            "steps": len(history) * steps_per_epoch,
            "images_per_s": float(np.mean([h["images_per_s"] for h in history])),
            "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in history])),
            "seconds_this_run": seconds,
            "train_seconds": float(sum(h["epoch_time_s"] for h in history)),
            "resumed_from_epoch": result.resumed_from if result.resumed_from is not None else -1,
            "epochs_this_run": result.epochs_run,
        }
    )
    return summary
