"""Continual-learning summaries of a result matrix R (n_stages x n_tasks).

R[i, j] is a metric of the encoder after stage i on task j (a probe's AUC, or the held-out reconstruction
loss of stage j's slices); np.nan marks a cell that was not or could not be measured. `task_stage[j]` is the
stage that trains task j's window/cohort, or -1 for a task no stage trains (an evaluation-only cohort).

Sign convention (one rule for every metric): BWT and FWT are *raw differences in the metric's own units*,
  BWT_j = R[T-1, j] - R[task_stage[j], j]   (final value minus value right after training task j)
  FWT_j = R[task_stage[j] - 1, j] - b[j]    (value before training task j minus a random encoder's)
so for an AUC/accuracy (higher is better) negative BWT is forgetting (Lopez-Paz & Ranzato 2017), and for a
loss (lower is better) positive BWT is forgetting (the loss rose) and negative FWT is positive transfer.
`forgetting_since_trained` removes the dependence on the metric's direction: it is positive = worse for
both, and is the number to tabulate when AUCs and losses share a table. It is -BWT (or BWT for a loss), i.e.
measured from the value right after training the task, not Chaudhry et al.'s max-over-stages forgetting.

Undefined cells are skipped, not propagated: a task whose needed cells are nan does not count in the mean,
and a mean over no task is nan. Never-trained tasks (stage -1) enter `average_final` only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

# The label-free R matrices (stage x stage) and whether higher is better. `recon` pairs each encoder with the
# decoder saved by the stage whose slices it reconstructs (the encoder's own forgetting); `recon_own` uses the
# evaluated model's own decoder, as a user reconstructing with the current model would (the whole model's
# forgetting, decoder included); `cka` is feature drift against the earlier stage's encoder.
LABEL_FREE_FAMILIES: dict[str, bool] = {"recon": False, "recon_own": False, "cka": True}


def _matrix(R: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] == 0 or R.shape[1] == 0:
        raise ValueError(f"R must be a non-empty (n_stages, n_tasks) matrix, got shape {R.shape}")
    return R


def _stages(task_stage: np.ndarray | Sequence[int], n_tasks: int) -> np.ndarray:
    stages = np.asarray(task_stage, dtype=np.int64).reshape(-1)
    if len(stages) != n_tasks:
        raise ValueError(f"task_stage has {len(stages)} entries but R has {n_tasks} tasks")
    if (stages < -1).any():
        raise ValueError("task_stage entries must be a stage index >= 0, or -1 for a never-trained task")
    return stages


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def average_final(R: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Mean over tasks of the last row: how good the final encoder is on everything (nan cells skipped)."""
    return _nanmean(_matrix(R)[-1])


def backward_transfer_per_task(R: np.ndarray | Sequence[Sequence[float]], task_stage: Sequence[int]) -> np.ndarray:
    """(n_tasks,) R[T-1, j] - R[task_stage[j], j]; nan for tasks not trained before the last stage of R
    (never trained, trained in the last stage, or beyond a partial R) or with a nan cell."""
    R = _matrix(R)
    stages = _stages(task_stage, R.shape[1])
    last = R.shape[0] - 1
    out = np.full(R.shape[1], np.nan)
    for j, s in enumerate(stages):
        if 0 <= s < last:
            out[j] = R[last, j] - R[s, j]
    return out


def backward_transfer(R: np.ndarray | Sequence[Sequence[float]], task_stage: Sequence[int]) -> float:
    """BWT: mean over tasks trained before the last stage of R[T-1, j] - R[stage(j), j], in the metric's
    units (see the module docstring for the sign: for a loss positive = forgetting)."""
    return _nanmean(backward_transfer_per_task(R, task_stage))


def forgetting_since_trained_per_task(
    R: np.ndarray | Sequence[Sequence[float]], task_stage: Sequence[int], higher_is_better: bool
) -> np.ndarray:
    """(n_tasks,) BWT_j oriented so that positive = worse: -BWT_j for an AUC, BWT_j for a loss."""
    bwt = backward_transfer_per_task(R, task_stage)
    return -bwt if higher_is_better else bwt


def forgetting_since_trained(
    R: np.ndarray | Sequence[Sequence[float]], task_stage: Sequence[int], higher_is_better: bool
) -> float:
    """Mean of `forgetting_since_trained_per_task`: positive = the final encoder is worse on earlier tasks
    than right after learning them, whichever direction the metric runs (an AUC drop and a loss rise both
    come out > 0)."""
    return _nanmean(forgetting_since_trained_per_task(R, task_stage, higher_is_better))


def forward_transfer_per_task(
    R: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[float], task_stage: Sequence[int]
) -> np.ndarray:
    """(n_tasks,) R[stage(j) - 1, j] - b[j] for tasks first trained after stage 0, else nan.

    `b` is the same metric for a randomly initialised encoder, so FWT_j is what the earlier stages alone
    already gave task j before any of its own data (raw difference: for a loss negative = helpful)."""
    R = _matrix(R)
    stages = _stages(task_stage, R.shape[1])
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(b) != R.shape[1]:
        raise ValueError(f"b has {len(b)} entries but R has {R.shape[1]} tasks")
    out = np.full(R.shape[1], np.nan)
    for j, s in enumerate(stages):
        if 0 < s <= R.shape[0]:
            out[j] = R[s - 1, j] - b[j]
    return out


def forward_transfer(
    R: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[float], task_stage: Sequence[int]
) -> float:
    """FWT: mean over tasks with stage(j) > 0 of R[stage(j) - 1, j] - b[j] (Lopez-Paz & Ranzato 2017)."""
    return _nanmean(forward_transfer_per_task(R, b, task_stage))


def mean_sd(values_over_seeds: np.ndarray | Sequence[float]) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof=1) over seeds (axis 0), skipping nan.

    A scalar per seed gives floats; stacked matrices (n_seeds, ...) give element-wise arrays, e.g. the
    mean +- sd of every R[i, j] cell. The sd is nan with fewer than two finite values: one seed says
    nothing about seed variance, and reporting 0 would claim it does.
    """
    values = np.asarray(values_over_seeds, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError("need at least one value (one per seed along axis 0)")
    count = np.sum(~np.isnan(values), axis=0)
    with warnings.catch_warnings():  # all-nan columns and single seeds are expected: they give nan
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        sd = np.where(count >= 2, np.nanstd(values, axis=0, ddof=1), np.nan)
    if values.ndim == 1:
        return float(mean), float(sd)
    return mean, sd
