"""Seconds of each frozen-encoder probe on the `cpu_raw` benchmark's stage-1 evaluation cohort. One JSON document.

`cssl compare --config cpu_raw` took 110 min, 20 over the budget, and its evaluate@s2 took 102-151 s per
experiment against ~30 s in `cpu`: this says which part of an evaluation that is, so that a cheaper one can be
chosen by measurement. Shapes as in the pipeline: cohort A's generator with the evaluation seed (96 patients x 40
slices, 96 px, mediastinal window, uint8 storage), the tiny model with plain targets (random weights: a probe's
cost depends on the shapes, not on what the encoder learnt), 4 patient folds, one thread (each of the comparison's
two jobs has one).

Usage: python bench/probe_cost.py [--patients 96] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import forgetting as study  # noqa: E402

from cssl_core.evaluation.features import extract_tokens, pooled  # noqa: E402
from cssl_core.evaluation.probes import attentive_probe, linear_probe  # noqa: E402
from cssl_core.evaluation.splits import patient_folds  # noqa: E402

POINT = "cpu_s1_long_eval96_raw"
FOLDS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=96)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    point = study.POINTS[POINT]
    size = study.model_config(point.model).img_size
    fresh = study.cohort(dict(study.COHORT_A, seed=study.EVAL_SEED), args.patients, size)
    images = study.windowed(fresh["hu"], point.windows[0])
    stored = study.stored_uint8(images)
    model = study.build_model(point, 0).eval()
    started = time.perf_counter()
    tokens = extract_tokens(model, stored, np.arange(len(stored)), batch=128)
    result = {"bench": "probe_cost", "slices": len(stored), "folds": FOLDS, "threads": 1,
              "extract_tokens_s": round(time.perf_counter() - started, 1), "tasks": {}}  # fmt: skip
    features = pooled(tokens)
    folds = patient_folds(fresh["patient"], FOLDS, 0)
    for task, (label, _) in study.S1_TASKS.items():
        y = fresh[label].astype(np.int64)
        seconds = {"linear": 0.0, "attentive": 0.0}
        for train, test in folds:
            started = time.perf_counter()
            linear_probe(features[train], y[train], features[test], y[test], 0)
            seconds["linear"] += time.perf_counter() - started
            started = time.perf_counter()
            attentive_probe(tokens[train], y[train], tokens[test], y[test], 0)
            seconds["attentive"] += time.perf_counter() - started
        result["tasks"][task] = {f"{name}_s": round(value, 1) for name, value in seconds.items()}
    study.emit(result, args.out)


if __name__ == "__main__":
    main()
