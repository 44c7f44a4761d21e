"""evaluate's per-task probe rows on in-memory features (no disk, no model): which probes run, the fraction
keys, the few-shot training side, and the nan-aware mean over folds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cssl_core.evaluation import PROBES, ProbeData, few_shot, linear_probe, patient_folds, pooled
from tasks.evaluate import task_probe_rows

torch.set_num_threads(1)
N, PATIENTS = 24, 6


def _data(with_masks: bool = True) -> tuple[ProbeData, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 2 == 0  # every patient has both classes
    tokens = rng.normal(size=(N, 4, 6)).astype(np.float32)
    tokens[labels, 0, 0] += 2.0
    token_labels = np.zeros((N, 4), dtype=bool)
    token_labels[labels, 0] = True
    data = ProbeData(
        labels=labels,
        tokens=tokens,
        features=pooled(tokens),
        token_labels=token_labels if with_masks else None,
        pixels=rng.normal(size=(N, 9)).astype(np.float32),
    )
    keys = np.array([f"p{i % PATIENTS}" for i in range(N)])
    return data, keys


def test_rows_hold_each_probe_in_order_with_fold_means_per_fraction():
    data, keys = _data()
    folds = patient_folds(keys, 2, 0)
    rows = list(task_probe_rows(data, keys, folds, ["linear", "token", "pixels"], [0.5, 1.0], seed=0))
    assert [probe for probe, _ in rows] == ["linear", "token", "pixels"]
    for _, by_fraction in rows:
        assert list(by_fraction) == ["0.5", "1.0"]
        assert all(set(metrics) == {"auc", "accuracy", "f1"} for metrics in by_fraction.values())
    linear = dict(rows)["linear"]
    for fraction in (0.5, 1.0):  # each fold trains on few_shot's subset of its training side
        per_fold = []
        for train_idx, test_idx in folds:
            train_idx = few_shot(train_idx, keys, fraction, 0, labels=data.labels)
            per_fold.append(linear_probe(data.features[train_idx], data.labels[train_idx],
                                         data.features[test_idx], data.labels[test_idx], 0))
        for metric in ("auc", "accuracy", "f1"):
            assert linear[str(fraction)][metric] == pytest.approx(np.mean([m[metric] for m in per_fold]))
    assert dict(rows)["token"]["1.0"]["auc"] > 0.9  # the lesion token is readable


def test_a_fold_without_both_classes_counts_for_accuracy_but_not_auc():
    data, keys = _data()
    positives, negatives = np.flatnonzero(data.labels), np.flatnonzero(~data.labels)
    mixed = (np.concatenate([positives[:8], negatives[:8]]), np.concatenate([positives[8:], negatives[8:]]))
    one_class = (np.concatenate([positives, negatives[:8]]), negatives[8:])  # a test side with no positive
    (_, by_fraction), = task_probe_rows(data, keys, [mixed, one_class], ["linear"], [1.0], seed=0)
    alone = [PROBES["linear"](data, np.sort(train), test, 0) for train, test in (mixed, one_class)]
    assert math.isnan(alone[1]["auc"]) and not math.isnan(alone[0]["auc"])
    assert by_fraction["1.0"]["auc"] == pytest.approx(alone[0]["auc"])
    assert by_fraction["1.0"]["accuracy"] == pytest.approx((alone[0]["accuracy"] + alone[1]["accuracy"]) / 2)


def test_a_task_without_masks_gets_an_empty_token_row_not_an_error():
    data, keys = _data(with_masks=False)
    rows = dict(task_probe_rows(data, keys, patient_folds(keys, 2, 0), ["token", "linear"], [1.0], seed=0))
    assert rows["token"] == {} and "1.0" in rows["linear"]


def test_an_unknown_probe_is_refused_by_name():
    data, keys = _data()
    with pytest.raises(KeyError, match="unknown probe 'ridge'"):
        list(task_probe_rows(data, keys, patient_folds(keys, 2, 0), ["ridge"], [1.0], seed=0))


def test_rows_for_the_knn_and_finetune_probes():
    from cssl_core.evaluation import FinetuneBudget, knn_probe
    from cssl_core.models import build_mae

    data, keys = _data()
    torch.manual_seed(0)
    model = build_mae("tiny", img_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32,
                      split_block=1).eval()
    images = torch.rand(N, 1, 16, 16)
    images[torch.from_numpy(data.labels), :, :8, :8] = 1.0  # positives: a bright quarter
    data = ProbeData(labels=data.labels, tokens=data.tokens, features=data.features, images=images, model=model,
                     finetune=FinetuneBudget(steps=3, batch_size=4))
    folds = patient_folds(keys, 2, 0)
    rows = dict(task_probe_rows(data, keys, folds, ["knn", "finetune"], [0.5, 1.0], seed=0))
    assert set(rows) == {"knn", "finetune"} and all(list(r) == ["0.5", "1.0"] for r in rows.values())
    per_fold = [knn_probe(data.features[tr], data.labels[tr], data.features[te], data.labels[te]) for tr, te in folds]
    assert rows["knn"]["1.0"]["auc"] == pytest.approx(np.mean([m["auc"] for m in per_fold]))
    again = dict(task_probe_rows(data, keys, folds, ["finetune"], [0.5, 1.0], seed=0))
    assert again["finetune"] == rows["finetune"]  # same seed, same numbers
