"""Stage `pretrain@<stage>`: one continual SSL stage, initialised from the previous stage's model.

Inputs: this stage's windowed slices (own cohort and window), data/models/<prev> and data/buffers/<prev>
(the accumulated replay buffer of every earlier stage): never earlier cohorts' images directly. Output:
data/models/<stage> (encoder + this stage's decoder + split), per-epoch metrics and plots, and
data/checkpoints/<stage>, which DVC keeps between runs (`persist`): one subdirectory per configuration
(keyed by `stage_fingerprint`), so a killed stage resumes where it stopped, and a configuration tried
before resumes or, when it finished, is reused without training (DVC deletes data/models/<stage> before
every run; the final checkpoint rebuilds it in seconds).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks import tracking
from tasks.buffers import read_buffer
from tasks.continual import StagePaths, load_model, save_model, stage_paths

INPUTS_FILE = "inputs.json"  # the input fingerprint of a checkpoint directory written before per-key directories
LEGACY = "legacy"
SPLIT_FILE = "split.json"
_SAMPLE_BYTES = 1 << 20


def _digest_file(path: Path, whole: bool = True) -> str:
    """sha256 of a file, or of its size + first and last MiB for large arrays (cheap, changes on rewrite)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if whole or size <= 2 * _SAMPLE_BYTES:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        else:
            digest.update(str(size).encode())
            digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _SAMPLE_BYTES)
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def input_fingerprint(paths: StagePaths, params: dict[str, Any]) -> dict[str, Any]:
    """What a persisted checkpoint must have been trained on to be resumed: upstream files and params."""
    files = {
        "prev_model": paths.prev_model / "model.pt",
        "prev_buffer_meta": paths.prev_buffer / "meta.json",
        "windowed_index": paths.windowed / "index.parquet",
        "windowed_meta": paths.windowed / "meta.json",
    }
    fingerprint = {name: _digest_file(path) for name, path in files.items()}
    fingerprint["windowed_slices"] = _digest_file(paths.windowed / "slices.npy", whole=False)
    buffer_data = paths.prev_buffer / "data.npy"
    if buffer_data.exists():
        fingerprint["prev_buffer_data"] = _digest_file(buffer_data, whole=False)
    ssl = params["ssl"]
    fingerprint["params"] = {
        "stage": params["continual"]["stages"][paths.name],
        "strategy": ssl["strategy"],
        "strategy_options": ssl["strategies"].get(ssl["strategy"], {}),
        "val_fraction": ssl["val_fraction"],
        "batch_size": ssl["batch_size"],
    }
    return fingerprint


def stage_fingerprint(inputs: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """Everything that determines a stage's training: its input files and params, and the loop's own
    fingerprint (model shape, strategy, optimisation, steps per epoch). Its key names the checkpoint
    directory."""
    return {"inputs": inputs, "training": training}


def adopt_legacy_checkpoints(root: Path) -> Path | None:
    """Checkpoint files lying directly in data/checkpoints/<stage> (the layout before one directory per
    configuration) move into the directory their own fingerprint names, so an upgrade resumes them rather
    than retraining; files whose fingerprint cannot be read go to `legacy` (the eviction bound removes it
    in time). Returns where they went, None when there were none."""
    from cssl_core.train.checkpoint import load_latest
    from cssl_core.train.store import fingerprint_key

    files = [p for p in root.iterdir() if p.is_file()] if root.is_dir() else []
    if not files:
        return None
    key = LEGACY
    record = root / INPUTS_FILE
    state = load_latest(root)
    if state is not None and record.is_file() and "fingerprint" in state:
        with contextlib.suppress(ValueError):
            key = fingerprint_key(stage_fingerprint(json.loads(record.read_text()), state["fingerprint"]))
    target, n = root / key, 1
    while target.exists():
        target, n = root / f"{key}-{LEGACY}-{n}", n + 1
    target.mkdir()
    for path in root.iterdir():
        if path.is_file():
            os.replace(path, target / path.name)
    return target


def _build_loaders(paths: StagePaths, ssl: dict[str, Any], image_size: int):
    from cssl_core.data import make_loader, train_transforms, train_val_split
    from cssl_core.data.windowed import WindowedSlices

    index = pd.read_parquet(paths.windowed / "index.parquet")
    seed = int(ssl["train"]["seed"])
    train_rows, val_rows = train_val_split(index, float(ssl["val_fraction"]), seed)
    train = WindowedSlices(paths.windowed, rows=train_rows, transform=train_transforms(image_size, seed))
    if train.size != image_size:
        raise ValueError(
            f"{paths.windowed} holds {train.size}px slices but the model takes {image_size}px: "
            "set window.size or ssl.model.img_size so they agree"
        )
    batch = int(ssl["batch_size"])
    workers = int(ssl.get("workers", 0))
    loaders = {"train": make_loader(train, batch, workers, seed)}
    if len(val_rows):
        val = WindowedSlices(paths.windowed, rows=val_rows)
        loaders["val"] = make_loader(val, batch, 0, seed, shuffle=False, drop_last=False)
    split = {
        "train_rows": train_rows.tolist(),
        "val_rows": val_rows.tolist(),
        "n_train_patients": int(index.iloc[train_rows]["patient_key"].nunique()),
        "n_val_patients": int(index.iloc[val_rows]["patient_key"].nunique()) if len(val_rows) else 0,
    }
    return loaders, split


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["epoch", *sorted({key for row in history for key in row})]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for epoch, row in enumerate(history, start=1):
            writer.writerow({"epoch": epoch, **{k: f"{v:.6g}" for k, v in row.items()}})


def _summary(history: list[dict[str, float]], result, seconds: float, steps_per_epoch: int) -> dict[str, Any]:
    last = history[-1]
    summary = {key.replace("/", "_"): value for key, value in last.items() if key.startswith(("loss/", "val/"))}
    summary.update(
        {
            "epochs": len(history),
            "steps": len(history) * steps_per_epoch,
            "images_per_s": float(np.mean([h["images_per_s"] for h in history])),
            "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in history])),
            "seconds_this_run": seconds,
            # summed over every epoch of the history, so a stage resumed from checkpoints still reports the
            # whole training time rather than the last invocation's few seconds
            "train_seconds": float(sum(h["epoch_time_s"] for h in history)),
            "resumed_from_epoch": result.resumed_from if result.resumed_from is not None else -1,
            "epochs_this_run": result.epochs_run,
        }
    )
    return summary


def run_pretrain(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    from cssl_core.strategies import STRATEGIES, build_strategy
    from cssl_core.strategies.nopeek import NoPeekPenalty, with_privacy_penalty
    from cssl_core.train import TrainConfig, train_stage
    from cssl_core.train.loop import training_fingerprint
    from cssl_core.train.store import checkpoint_dir

    paths = stage_paths(params, stage)
    ssl = params["ssl"]
    strategy_name = ssl["strategy"]
    stage_overrides = params["continual"]["stages"][stage].get("train") or {}
    config = TrainConfig.from_dict({**ssl["train"], **stage_overrides})
    model, _ = load_model(paths.prev_model)
    loaders, split = _build_loaders(paths, ssl, model.config.img_size)
    options = dict(ssl.get("strategies", {}).get(strategy_name) or {})
    if "new_stage_size" in getattr(STRATEGIES.get(strategy_name), "default_options", {}):
        options.setdefault("new_stage_size", len(split["train_rows"]))  # joint sizes its replay batch by it
    # replay.privacy.mode adversarial: a NoPeek penalty on the lower encoder while it trains (the other modes
    # act at export; the block is validated there)
    strategy = with_privacy_penalty(build_strategy(strategy_name, options), params["replay"].get("privacy") or {})
    teacher = None
    if paths.index > 0 and getattr(strategy, "needs_teacher", False):
        teacher = copy.deepcopy(model).eval()
        teacher.requires_grad_(False)
    if paths.index > 0 and getattr(strategy, "freeze_lower_after_first", False):
        model.freeze_lower()
    replay = read_buffer(paths.prev_buffer)
    stage_name = f"pretrain@{stage}"
    adopted = adopt_legacy_checkpoints(paths.checkpoints)
    if adopted is not None:
        print(f"{stage_name}: moved checkpoints of the earlier layout into {adopted}", flush=True)
    fingerprint = stage_fingerprint(
        input_fingerprint(paths, params), training_fingerprint(model, strategy, config, len(loaders["train"]))
    )
    checkpoints, evicted = checkpoint_dir(paths.checkpoints, fingerprint, config.keep_checkpoints)
    for old, size in evicted:
        print(
            f"{stage_name}: removed the checkpoints of an older configuration ({old}, {size / 1e6:.1f} MB) "
            f"to keep ssl.train.keep_checkpoints={config.keep_checkpoints}",
            flush=True,
        )
    identity = {
        "stage": stage,
        "prev": paths.prev,
        "cohort": paths.cohort,
        "window": paths.window,
        "strategy": strategy_name,
        "strategy_options": strategy.options,
        "keeps_raw_images": strategy.keeps_raw_images,
        "lower_frozen": model.lower_frozen,
    }
    run_params = {
        **identity,
        "train": config.to_dict(),
        "model": model.config.to_dict(),
        "batch_size": ssl["batch_size"],
        "replay_samples": 0 if replay is None else len(replay),
        "nopeek_weight": strategy.weight if isinstance(strategy, NoPeekPenalty) else 0.0,
        "checkpoint_key": checkpoints.name,
    }
    tags = {"cssl.cohort": paths.cohort, "cssl.window": paths.window, "cssl.strategy": strategy_name}
    with tracking.stage_run(stage_name, run_params, tags=tags):

        def report(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()}, step=epoch)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith(("loss/", "val/")))
            print(f"{stage_name} epoch {epoch + 1}/{config.epochs}: {shown}", flush=True)

        started = time.perf_counter()
        arguments = dict(stage_index=paths.index, stage_name=stage, teacher=teacher, replay=replay)
        result = train_stage(model, strategy, loaders, config, checkpoints, report, **arguments)
        seconds = time.perf_counter() - started
        if result.resumed_from is not None and result.epochs_run == 0:
            print(f"{stage_name}: reused the finished run in {checkpoints} (no epoch trained)", flush=True)
        elif result.resumed_from:
            print(f"{stage_name}: resumed after epoch {result.resumed_from} from {checkpoints}", flush=True)

        description = {
            **identity,
            "model_config": model.config.to_dict(),
            "seed": config.seed,
            "stage_index": paths.index,
        }
        if paths.model.exists():
            shutil.rmtree(paths.model)
        save_model(paths.model, model, description)
        (paths.model / SPLIT_FILE).write_text(json.dumps(split) + "\n")
        summary = _summary(result.history, result, seconds, len(loaders["train"]))
        metrics_path = paths.metrics("pretrain")
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        _write_history(paths.metrics("pretrain", "-history.csv"), result.history)
        tracking.log_metrics({f"final_{k}": v for k, v in summary.items() if isinstance(v, int | float)})
        import mlflow

        mlflow.log_artifacts(str(paths.model), artifact_path="model")
        if result.checkpoint is not None and Path(result.checkpoint).exists():
            mlflow.log_artifact(str(result.checkpoint), artifact_path="checkpoint")
    return summary
