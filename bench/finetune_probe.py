"""Seconds per call of the `finetune` probe (and of the `knn` probe beside it) on demo-sized data, one JSON line.

Why: evaluate@<stage> calls a probe once per task x fold x fraction, so the fine-tune budget (eval.finetune)
multiplies into every stage's evaluation time. The data are the demo cohort phantom_a as params.yaml
generates it (8 patients x 40 slices, mediastinal window, label has_mediastinal_lesion), resized to the model's
input size; the folds and few-shot fractions are evaluate's (3 patient folds, fractions 0.1 and 1.0). The
encoder is the random `tiny` preset at --size px (pretraining changes the numbers the probe reports, not its
cost). Each figure is the median over the folds; the load average is reported because the machine may be shared.

Usage: python bench/finetune_probe.py [--size 96] [--threads 1] [--steps 60] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=96, help="slice size in px (the tiny preset uses 96)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    args = parser.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F

    from cssl_core.demo.phantom import PhantomConfig, cohort_volumes
    from cssl_core.evaluation import FinetuneBudget, few_shot, finetune_probe, knn_probe, patient_folds, pooled
    from cssl_core.evaluation.features import as_images, extract_tokens
    from cssl_core.models import build_mae
    from cssl_core.windowing import Window, quantise, window_unit

    torch.set_num_threads(args.threads)
    window = Window("mediastinal", width=350.0, level=40.0)  # mediastinal (params.yaml window.presets)
    config = PhantomConfig(seed=11, n_patients=8, n_slices=40, matrix=128)  # data.demo.phantom_a
    slices, labels, keys = [], [], []
    for patient, hu, _, found in cohort_volumes(config):
        unit = torch.from_numpy(window_unit(hu.astype(np.float32), window))[:, None]
        small = F.interpolate(unit, size=(args.size, args.size), mode="area")[:, 0].numpy()
        slices.append(quantise(small))
        labels.append(np.asarray(found["has_mediastinal_lesion"], dtype=bool))
        keys += [f"p{patient}"] * len(hu)
    slices_u8, y, keys_arr = np.concatenate(slices), np.concatenate(labels), np.array(keys)
    rows = np.arange(len(y))
    torch.manual_seed(0)
    model = build_mae("tiny", img_size=args.size).eval()
    images = as_images(slices_u8, rows)
    features = pooled(extract_tokens(model, slices_u8, rows))
    budget = FinetuneBudget(steps=args.steps, batch_size=args.batch)
    finetune_s: dict[str, list[float]] = {str(f): [] for f in args.fractions}
    knn_s: list[float] = []
    aucs: dict[str, list[float]] = {str(f): [] for f in args.fractions}
    load_before = os.getloadavg()[0]
    for train_idx, test_idx in patient_folds(keys_arr, 3, 0):
        for fraction in args.fractions:
            train = few_shot(train_idx, keys_arr, fraction, 0, labels=y)
            start = time.perf_counter()
            metrics = finetune_probe(model, images[train], y[train], images[test_idx], y[test_idx], 0, budget)
            finetune_s[str(fraction)].append(time.perf_counter() - start)
            aucs[str(fraction)].append(metrics["auc"])
        start = time.perf_counter()
        knn_probe(features[train_idx], y[train_idx], features[test_idx], y[test_idx])
        knn_s.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "bench": "finetune_probe",
                "size_px": args.size,
                "threads": args.threads,
                "steps": args.steps,
                "batch": args.batch,
                "slices": int(len(y)),
                "positives": int(y.sum()),
                "finetune_s_per_call": {f: round(statistics.median(s), 3) for f, s in finetune_s.items()},
                "finetune_auc_random_encoder": {f: round(float(np.nanmean(a)), 3) for f, a in aucs.items()},
                "knn_s_per_call": round(statistics.median(knn_s), 4),
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
