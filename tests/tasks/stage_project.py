"""A project directory holding exactly what pretrain@s1 and export@s1 read: windowed slices of one cohort
and window, and the init model and buffer (written by the real init stage). Tests chdir into it, as DVC does."""

from __future__ import annotations

import copy
from pathlib import Path

from tests.cssl_core.train.fixtures import write_windowed
from tests.helpers import tiny_params

N_SLICES, N_PATIENTS = 24, 4  # val_fraction 0.5: two training patients, 12 training slices


def stage_params(strategy: str = "er") -> dict:
    params = copy.deepcopy(tiny_params())
    params["continual"]["stages"] = {"s1": {"prev": "init", "cohort": "phantom_a", "window": "mediastinal"}}
    params["ssl"]["strategy"] = strategy
    return params


def make_stage_project(root: Path) -> Path:
    write_windowed(root / "data/windowed/phantom_a-mediastinal", n=N_SLICES, size=32, n_patients=N_PATIENTS)
    return root
