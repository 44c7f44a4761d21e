"""Is a pretraining gain hidden by the probe's readout or by the labels? One JSON document.

The forgetting study (bench/forgetting.py, point `cpu_s1_long_eval96`) found the stage-1 encoder no better than
a random one on fresh patients: the linear probe on mean-pooled tokens differs by +0.016 +- 0.032 (mediastinal
lesion) and -0.002 +- 0.014 (low-contrast mass). Two explanations are testable without training anything new:

- **the readout**: the mean over tokens dilutes a lesion that covers one token in 36, and the last block may
  not be where an MAE keeps what a probe needs. Readouts: token mean, max, mean+max and sd of the last block,
  the token mean of every earlier block, and the mean with a tenth of the training labels (label efficiency,
  the usual case for pretraining);
- **the labels**: a slice counts as positive from 3 lesion pixels on, so many positives show a lesion's edge
  that no encoder can see at 96 px. Labels that keep only findings of at least T pixels (slices with 1..T-1
  pixels left out) ask whether the gap opens on visible findings.

Same stage-1 training as `cpu_s1_long_eval96` (cohort A, 32 patients, 30 epochs, mediastinal window), same 96
fresh patients and 4 patient folds; the random encoder is the same seed's initialisation. Every readout and
threshold is reported, with the paired difference over seeds; "beats" is mean > 2 sd, and with ~20 cells
per task one such cell is expected by chance alone.

Usage: python bench/readouts.py [--seeds 0 1 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import forgetting as study  # noqa: E402

from cssl_core.evaluation.probes import linear_probe  # noqa: E402
from cssl_core.evaluation.splits import patient_folds  # noqa: E402
from cssl_core.models.mae import MaskedAutoencoder  # noqa: E402

POINT_NAME = "cpu_s1_long_eval96"
POINT_CHOICES = (POINT_NAME, "cpu_s1_long_eval96_raw")  # the same with plain [0, 1] pixel targets
THRESHOLDS = (1, 10, 25, 50)  # lesion pixels on the 96-px slice for a positive label
FEW_SHOT = 0.1  # share of the training folds' slices for the label-efficiency readout (at least 20)


def block_tokens(model: MaskedAutoencoder, images: torch.Tensor, batch: int = 128) -> np.ndarray:
    """(blocks, n, tokens, C): every block's output on the unmasked slice, the last through the final norm (what
    `model.encode` returns)."""
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x, per_block = model.embed(images[start : start + batch]), []
            for index, block in enumerate(model.blocks):
                x = block(x)
                per_block.append((model.norm(x) if index == len(model.blocks) - 1 else x).numpy())
            chunks.append(np.stack(per_block))
    return np.concatenate(chunks, axis=1)


def readouts(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """(blocks, n, tokens, C) -> readout name -> (n, d) features."""
    last = tokens[-1]
    out = {
        "mean_last": last.mean(1),
        "max_last": last.max(1),
        "meanmax_last": np.concatenate([last.mean(1), last.max(1)], axis=1),
        "sd_last": last.std(1),
    }
    for index in range(len(tokens) - 1):
        out[f"mean_block{index + 1}"] = tokens[index].mean(1)
    return out


def visible_labels(area: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, label) for `threshold` lesion pixels: negatives have none, positives at least `threshold`;
    a slice with 1..threshold-1 pixels is neither and is left out."""
    keep = (area == 0) | (area >= threshold)
    return keep, (area >= threshold).astype(np.int64)


def few_shot(train_rows: np.ndarray, seed: int) -> np.ndarray:
    count = max(20, int(FEW_SHOT * len(train_rows)))
    return np.random.default_rng(seed).permutation(train_rows)[:count]


def probe_auc(X: np.ndarray, y: np.ndarray, folds, seed: int, keep: np.ndarray | None = None, few: bool = False):
    aucs = []
    for train_rows, test_rows in folds:
        if keep is not None:
            train_rows, test_rows = train_rows[keep[train_rows]], test_rows[keep[test_rows]]
        if few:
            train_rows = few_shot(train_rows, seed)
        aucs.append(linear_probe(X[train_rows], y[train_rows], X[test_rows], y[test_rows], seed)["auc"])
    return float(np.nanmean(aucs))


def stage1_model(
    point: study.Point, seed: int, data: dict[str, np.ndarray], name: str = POINT_NAME
) -> tuple[MaskedAutoencoder, float]:
    """The study's stage-1 model of point `name` and `seed`, trained here or read from the cache (seconds
    trained)."""
    path = study.CACHE / "models" / f"{name}-s1-{seed}.pt"
    model = study.build_model(point, seed)
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model.eval(), 0.0
    images = study.windowed(data["hu"], point.windows[0])
    held = torch.from_numpy(study.held_out(data["patient"], seed))
    seconds = study.train(model, images[~held], point.epochs[0], point.lr[0], point.batch_size, seed, point.augment)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval(), seconds


def run_seed(seed: int, name: str = POINT_NAME) -> dict:
    point = study.POINTS[name]
    size = study.MAEConfig(**study.PRESETS["tiny"]).img_size
    trained, seconds = stage1_model(point, seed, study.cohort(study.COHORT_A, point.patients[0], size), name)
    fresh = study.cohort(dict(study.COHORT_A, seed=study.EVAL_SEED), point.eval_patients, size)
    images = study.windowed(fresh["hu"], point.windows[0])
    folds = patient_folds(fresh["patient"], point.eval_folds, seed)
    encoders = {"random": study.build_model(point, seed).eval(), "s1": trained}
    features = {name: readouts(block_tokens(model, images)) for name, model in encoders.items()}
    aucs: dict[str, dict[str, float]] = {"random": {}, "s1": {}}
    for task, (label, mask_class) in study.S1_TASKS.items():
        y = fresh[label].astype(np.int64)
        area = (fresh["masks"] == mask_class).sum(axis=(1, 2))
        for name, by_readout in features.items():
            for readout, X in by_readout.items():
                aucs[name][f"{task}|{readout}"] = probe_auc(X, y, folds, seed)
            aucs[name][f"{task}|mean_last_few{int(FEW_SHOT * 100)}"] = probe_auc(
                by_readout["mean_last"], y, folds, seed, few=True
            )
            for threshold in THRESHOLDS:
                keep, visible = visible_labels(area, threshold)
                aucs[name][f"{task}|mean_last_area>={threshold}px"] = probe_auc(
                    by_readout["mean_last"], visible, folds, seed, keep=keep
                )
    return {"seed": seed, "train_seconds": round(seconds, 1), "auc": aucs}


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for cell in runs[0]["auc"]["s1"]:
        s1 = np.array([r["auc"]["s1"][cell] for r in runs])
        random = np.array([r["auc"]["random"][cell] for r in runs])
        difference = s1 - random
        sd = float(difference.std(ddof=1)) if len(runs) > 1 else float("nan")
        out[cell] = {"s1": round(float(s1.mean()), 4), "random": round(float(random.mean()), 4),
                     "difference": round(float(difference.mean()), 4), "sd": round(sd, 4),
                     "beats": bool(len(runs) > 1 and difference.mean() > 2 * sd)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--point", default=POINT_NAME, choices=POINT_CHOICES,
                        help="the forgetting study's point whose stage-1 models are probed")  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(seed, args.point))
        print(json.dumps({"seed": seed, "train_seconds": runs[-1]["train_seconds"]}), file=sys.stderr, flush=True)
    result = {"bench": "readouts", "point": args.point, "seeds": args.seeds, "summary": summarise(runs),
              "runs": runs, "wall_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    study.emit(result, args.out)


if __name__ == "__main__":
    main()
