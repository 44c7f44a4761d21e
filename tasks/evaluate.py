"""Stage `evaluate@<stage>` (and `evaluate@init` for the random encoder): one row of every R matrix.

Two families (docs/design.md, Evaluation). Label-free forgetting: for every stage j up to this one, the
masked-reconstruction loss on stage j's held-out slices with this encoder and stage j's own decoder (the
encoder's forgetting), the same with this model's own decoder (the whole model's, as a user reconstructing
with it sees it), and linear CKA between stage j's encoder and this one on those slices. Downstream probes:
linear and kNN on pooled tokens, attentive over the tokens, token-level against lesion masks, and end-to-end
fine-tuning of a copy of the encoder for a fixed budget (`eval.finetune`), those of `eval.probes`, on every
labelled task of `eval.tasks`, with patient-level folds and few-shot label fractions. `evaluate@init` adds the
reference probe on raw downsampled pixels, so the report can show what pretraining adds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.config.evaluation import EvalTask
from cssl_core.evaluation.continual import LABEL_FREE_FAMILIES
from cssl_core.layout import INIT, eval_row, metrics_path, model_dir, windowed_dir
from cssl_core.models.io import load_model
from cssl_core.windowing import to_unit
from tasks import tracking

if TYPE_CHECKING:
    from cssl_core.evaluation.registry import ProbeData


def _images(windowed: Path, rows: np.ndarray) -> torch.Tensor:
    slices = np.load(windowed / "slices.npy", mmap_mode="r")
    return torch.from_numpy(to_unit(slices[np.sort(rows)]))[:, None]


def label_free_row(model, config: ProjectConfig, chain: list[str], label: str = "evaluate") -> dict[str, Any]:
    from cssl_core.evaluation import Progress, extract_tokens, linear_cka, pooled, reconstruction_loss

    block = config.eval
    recon, recon_own, cka = {}, {}, {}
    progress = Progress(label, "label-free", len(chain))
    for earlier in chain:
        paths = config.continual.paths(earlier)
        val_rows = np.asarray(json.loads(paths.split.read_text())["val_rows"], dtype=np.int64)
        if len(val_rows) == 0:
            progress.step(f"{earlier}: no held-out slices, skipped")
            continue
        rows = np.sort(val_rows)[: block.recon_slices]
        decoder_model, _ = load_model(paths.model)
        images = _images(paths.windowed, rows)
        recon[earlier] = reconstruction_loss(model, decoder_model, images, block.seed)
        # on this stage's own slices its saved decoder is the model's own: the same number, not computed twice
        own = earlier == chain[-1]
        recon_own[earlier] = recon[earlier] if own else reconstruction_loss(model, model, images, block.seed)
        slices = np.load(paths.windowed / "slices.npy", mmap_mode="r")
        mine = pooled(extract_tokens(model, slices, rows))
        theirs = pooled(extract_tokens(decoder_model, slices, rows))
        cka[earlier] = linear_cka(theirs, mine)
        progress.step(f"{earlier}: recon={recon[earlier]:.4g} own={recon_own[earlier]:.4g} cka={cka[earlier]:.3f}")
    return {"recon": recon, "recon_own": recon_own, "cka": cka}


def _task_data(task: EvalTask) -> tuple[Path, pd.DataFrame, np.ndarray, np.ndarray]:
    windowed = windowed_dir(task.cohort, task.window)
    if not windowed.exists():
        raise FileNotFoundError(f"{windowed}: the task's cohort/window is not in ingest.cohorts x window.apply")
    index = pd.read_parquet(windowed / "index.parquet")
    column = task.label
    if column not in index.columns:
        raise KeyError(f"{windowed}/index.parquet has no label column {column!r} (have: {list(index.columns)})")
    known = index[column].notna().to_numpy()
    rows = np.flatnonzero(known)
    labels = index[column].to_numpy()[rows].astype(bool)
    return windowed, index, rows, labels


def _mean_metrics(per_fold: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for fold in per_fold for k in fold})
    out = {}
    for key in keys:
        values = np.array([fold.get(key, np.nan) for fold in per_fold], dtype=float)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def _auc_line(by_fraction: dict[str, dict[str, float]]) -> str:
    shown = [f"auc@{fraction}={metrics.get('auc', float('nan')):.3f}" for fraction, metrics in by_fraction.items()]
    return " ".join(shown) or "no result (no masks for the token probe)"


def probe_row(model, config: ProjectConfig, with_pixels: bool, label: str = "evaluate") -> dict[str, Any]:
    from cssl_core.evaluation import (
        REFERENCE_PROBE,
        ProbeData,
        Progress,
        as_images,
        extract_tokens,
        needed_inputs,
        patient_folds,
        pixel_features,
        pooled,
        token_labels_from_masks,
    )

    block = config.eval
    seed = block.seed
    probes = list(block.probes) + ([REFERENCE_PROBE] if with_pixels else [])
    needs = needed_inputs(probes)
    results: dict[str, Any] = {probe: {} for probe in probes}
    progress = Progress(label, "probe", len(block.tasks) * len(probes))  # tasks x probes
    for task_name, task in block.tasks.items():
        windowed, index, rows, labels = _task_data(task)
        slices = np.load(windowed / "slices.npy", mmap_mode="r")
        tokens = extract_tokens(model, slices, rows)
        features = pooled(tokens)
        token_labels = None
        if "token_labels" in needs and (windowed / "masks.npy").exists():
            masks = np.load(windowed / "masks.npy", mmap_mode="r")
            token_labels = token_labels_from_masks(np.asarray(masks[rows]) == task.mask_class, model.config.patch_size)
        pixels = pixel_features(slices, rows) if "pixels" in needs else None
        data = ProbeData(
            labels=labels,
            tokens=tokens,
            features=features,
            token_labels=token_labels,
            pixels=pixels,
            images=as_images(slices, rows) if "images" in needs else None,
            model=model if "model" in needs else None,
            finetune=block.finetune,
        )
        keys = index["patient_key"].to_numpy()[rows]
        folds = patient_folds(keys, block.folds if task.folds is None else task.folds, seed)
        for probe, by_fraction in task_probe_rows(data, keys, folds, probes, block.fractions, seed):
            results[probe][task_name] = by_fraction
            progress.step(f"{task_name} {probe} {_auc_line(by_fraction)}")
    return results


def task_probe_rows(
    data: ProbeData,
    keys: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    probes: Sequence[str],
    fractions: Sequence[float],
    seed: int,
) -> Iterator[tuple[str, dict[str, dict[str, float]]]]:
    """(probe, {fraction: fold-mean metrics}) for one task's ProbeData, probe by probe as each finishes.

    Pure (no disk, no model): probe_row reads the task's rows and runs this, so it is tested on in-memory
    features. Every fold's training side is cut to `fraction` of its patients (few_shot) first; a probe that
    gives no result for the task (the token probe without masks) leaves its fractions out.
    """
    from cssl_core.evaluation import few_shot, get_probe

    for probe in probes:
        fit = get_probe(probe)
        by_fraction: dict[str, dict[str, float]] = {}
        for fraction in fractions:
            per_fold = []
            for train_idx, test_idx in folds:
                train_idx = few_shot(train_idx, keys, float(fraction), seed, labels=data.labels)
                metrics = fit(data, train_idx, test_idx, seed)
                if metrics is not None:
                    per_fold.append(metrics)
            if per_fold:
                by_fraction[str(fraction)] = _mean_metrics(per_fold)
        yield probe, by_fraction


def shared_probe_row(model, config: ProjectConfig, with_pixels: bool, label: str = "evaluate") -> dict[str, Any]:
    """probe_row, or its result for the same weights, eval params and task data from the share of a comparison's
    experiments (cssl_core.evaluation.shared; without $CSSL_SHARE always computed)."""
    from cssl_core.evaluation.shared import probe_key, shared_result, task_digests
    from cssl_core.models.io import encoder_digest
    from cssl_core.share import share_dir

    share = share_dir("probes")
    if share is None:
        return probe_row(model, config, with_pixels, label)
    tasks = task_digests({name: windowed_dir(task.cohort, task.window) for name, task in config.eval.tasks.items()})
    key = probe_key(encoder_digest(model), config.eval.as_params(), tasks, with_pixels)
    return shared_result(
        share, key, lambda: probe_row(model, config, with_pixels, label), say=lambda line: print(f"{label}: {line}")
    )


def timing_path(stage: str) -> Path:
    """Where evaluate@<stage> records its wall-clock time: a `cache: false` metric nothing depends on."""
    return metrics_path("evaluate", stage)


def run_evaluate(stage: str, config: ProjectConfig) -> dict[str, Any]:
    """Write data/eval/<stage>.json: only numbers fixed by the inputs (a dependency of later evaluate stages
    and of report, so a re-run must not change it); the time taken goes to MLflow and timing_path()."""
    chain = list(config.continual.chain(stage))
    seed = config.eval.seed
    label = f"evaluate@{stage}"
    with tracking.stage_run(
        label, {"stage": stage, **config.eval.as_params()}, tags={"cssl.strategy": config.ssl.strategy}
    ):
        started = time.perf_counter()
        torch.manual_seed(seed)
        model, description = load_model(model_dir(stage))
        model.eval()
        row: dict[str, Any] = {"stage": stage, "index": len(chain), "strategy": description.get("strategy")}
        row.update(label_free_row(model, config, chain, label) if chain else {f: {} for f in LABEL_FREE_FAMILIES})
        row["probes"] = shared_probe_row(model, config, with_pixels=stage == INIT, label=label)
        seconds = time.perf_counter() - started
        out = eval_row(stage)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, row)  # NaN where a probe could not run (json's NaN, as before)
        timing_path(stage).parent.mkdir(parents=True, exist_ok=True)
        write_json(timing_path(stage), {"seconds": round(seconds, 3)})
        flat = {f"{family}.{k}": v for family in LABEL_FREE_FAMILIES for k, v in row[family].items()}
        for probe, tasks in row["probes"].items():
            for task, by_fraction in tasks.items():
                for fraction, metrics in by_fraction.items():
                    flat[f"{probe}.{task}.{fraction}.auc"] = metrics.get("auc", float("nan"))
        tracking.log_metrics({k: v for k, v in flat.items() if np.isfinite(v)} | {"seconds": seconds})
    return row
