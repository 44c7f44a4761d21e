"""Continual-learning summaries against matrices small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cssl_core.evaluation import (
    average_final,
    backward_transfer,
    backward_transfer_per_task,
    forgetting_since_trained,
    forgetting_since_trained_per_task,
    forward_transfer,
    forward_transfer_per_task,
    mean_sd,
)

# 3 stages x 4 tasks (AUC-like, higher is better). Task 0 is trained in stage 0, task 1 in stage 1, task 2
# in stage 2 (the last), task 3 by no stage (an evaluation-only cohort).
R = np.array(
    [
        [0.90, 0.60, 0.50, 0.70],
        [0.80, 0.95, 0.55, 0.72],
        [0.70, 0.85, 0.90, 0.74],
    ]
)
STAGE = [0, 1, 2, -1]
B = np.array([0.50, 0.50, 0.50, 0.60])  # a random encoder's AUC per task


def test_average_final_is_the_mean_of_the_last_row():
    # (0.70 + 0.85 + 0.90 + 0.74) / 4 = 3.19 / 4 = 0.7975
    assert average_final(R) == pytest.approx(0.7975)


def test_backward_transfer_by_hand():
    # task 0: R[2,0] - R[0,0] = 0.70 - 0.90 = -0.20
    # task 1: R[2,1] - R[1,1] = 0.85 - 0.95 = -0.10
    # task 2: trained in the last stage -> undefined; task 3: never trained -> undefined
    per_task = backward_transfer_per_task(R, STAGE)
    np.testing.assert_allclose(per_task[:2], [-0.20, -0.10])
    assert np.isnan(per_task[2]) and np.isnan(per_task[3])
    # BWT = (-0.20 + -0.10) / 2 = -0.15: negative = forgetting for a higher-is-better metric
    assert backward_transfer(R, STAGE) == pytest.approx(-0.15)
    # forgetting is oriented positive = worse
    assert forgetting_since_trained(R, STAGE, higher_is_better=True) == pytest.approx(0.15)
    np.testing.assert_allclose(forgetting_since_trained_per_task(R, STAGE, higher_is_better=True)[:2], [0.20, 0.10])


def test_forward_transfer_by_hand():
    # task 1 (stage 1): R[0,1] - b[1] = 0.60 - 0.50 = 0.10
    # task 2 (stage 2): R[1,2] - b[2] = 0.55 - 0.50 = 0.05
    # task 0 (stage 0, nothing before it) and task 3 (never trained) -> undefined
    per_task = forward_transfer_per_task(R, B, STAGE)
    np.testing.assert_allclose(per_task[1:3], [0.10, 0.05])
    assert np.isnan(per_task[0]) and np.isnan(per_task[3])
    # FWT = (0.10 + 0.05) / 2 = 0.075
    assert forward_transfer(R, B, STAGE) == pytest.approx(0.075)


def test_nan_cells_are_skipped_not_propagated():
    partial = R.copy()
    partial[0, 0] = np.nan  # task 0 was not measured right after stage 0
    partial[2, 3] = np.nan  # nor task 3 after the last stage
    # BWT: only task 1 is left -> -0.10
    assert backward_transfer(partial, STAGE) == pytest.approx(-0.10)
    # average: (0.70 + 0.85 + 0.90) / 3 = 2.45 / 3
    assert average_final(partial) == pytest.approx(2.45 / 3)
    # nothing defined at all -> nan, without a warning or an exception
    assert math.isnan(backward_transfer(np.full((2, 2), np.nan), [0, 1]))
    assert math.isnan(forward_transfer(R, B, [0, 0, 0, -1]))  # every task trained in stage 0: no FWT


def test_loss_sign_convention_positive_means_forgetting():
    # held-out reconstruction loss (lower is better) of 2 stages x 2 tasks
    loss = np.array(
        [
            [1.0, 2.0],
            [1.3, 0.8],
        ]
    )
    # task 0: loss after the last stage minus right after stage 0 = 1.3 - 1.0 = +0.3: the loss rose
    assert backward_transfer(loss, [0, 1]) == pytest.approx(0.3)
    assert forgetting_since_trained(loss, [0, 1], higher_is_better=False) == pytest.approx(0.3)
    # the same number read as an AUC would be an improvement, hence negative forgetting
    assert forgetting_since_trained(loss, [0, 1], higher_is_better=True) == pytest.approx(-0.3)
    # FWT for task 1: loss after stage 0 minus a random encoder's: 2.0 - 2.5 = -0.5 (negative = helpful)
    assert forward_transfer(loss, [3.0, 2.5], [0, 1]) == pytest.approx(-0.5)


def test_partial_matrix_of_an_unfinished_run():
    # only stages 0 and 1 have run; task 2 belongs to a stage that has not happened yet
    done = R[:2]
    # BWT: task 0 only (task 1 is trained in the last row): 0.80 - 0.90 = -0.10
    assert backward_transfer(done, STAGE) == pytest.approx(-0.10)
    # FWT: task 1: 0.60 - 0.50 = 0.10; task 2: R[1,2] - b[2] = 0.55 - 0.50 = 0.05 -> 0.075
    assert forward_transfer(done, B, STAGE) == pytest.approx(0.075)


def test_shape_checks():
    with pytest.raises(ValueError):
        backward_transfer(R, [0, 1])
    with pytest.raises(ValueError):
        forward_transfer(R, [0.5], STAGE)
    with pytest.raises(ValueError):
        backward_transfer(R, [0, 1, 2, -2])
    with pytest.raises(ValueError):
        average_final(np.zeros((0, 3)))


def test_mean_sd_over_seeds():
    # mean 0.8, sd = sqrt(((-0.1)^2 + 0^2 + 0.1^2) / (3 - 1)) = 0.1
    mean, sd = mean_sd([0.7, 0.8, 0.9])
    assert mean == pytest.approx(0.8) and sd == pytest.approx(0.1)
    # nan seeds are skipped: mean 0.8, sd = sqrt((0.01 + 0.01) / 1)
    mean, sd = mean_sd([0.7, np.nan, 0.9])
    assert mean == pytest.approx(0.8) and sd == pytest.approx(math.sqrt(0.02))
    # one seed: the sd is unknown, not zero
    mean, sd = mean_sd([0.7])
    assert mean == pytest.approx(0.7) and math.isnan(sd)
    # stacked R matrices of 2 seeds -> element-wise
    mean, sd = mean_sd(np.stack([R, R + 0.02]))
    np.testing.assert_allclose(mean, R + 0.01)
    np.testing.assert_allclose(sd, np.full(R.shape, math.sqrt(2 * 0.01**2)))
