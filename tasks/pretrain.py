"""Stage `pretrain@<stage>`: one continual SSL stage, initialised from the previous stage's model.

Inputs: this stage's windowed slices (own cohort and window), data/models/<prev> and data/buffers/<prev>
(the accumulated replay buffer of every earlier stage): never earlier cohorts' images directly. Outputs:
data/models/<stage> (encoder + this stage's decoder + split), per-epoch metrics, and data/checkpoints/<stage>,
which DVC keeps between runs (`persist`). The training loop keys a directory there by everything that
determines the run (the input digests below + its own settings), so a killed stage resumes where it stopped
and a configuration tried before resumes or, when it finished, is reused without training (DVC deletes
data/models/<stage> before every run; the final checkpoint rebuilds it in seconds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.config.ssl import DistributedConfig
from cssl_core.layout import StagePaths
from tasks import tracking


def input_digests(paths: StagePaths, config: ProjectConfig) -> dict[str, Any]:
    """What a checkpoint must have been trained on to be resumed: upstream files and the params outside the
    TrainConfig. The loop adds its own settings and the strategy's training identity, which on a first stage is
    the same for every strategy that trains plain MAE there (so a comparison trains stage 1 once per seed)."""
    from cssl_core.train.digests import input_digests as digests

    whole = {
        "prev_model": paths.prev_model / "model.pt",
        "prev_buffer_meta": paths.prev_buffer / "meta.json",
        "windowed_index": paths.windowed / "index.parquet",
        "windowed_meta": paths.windowed / "meta.json",
    }
    sampled = {"windowed_slices": paths.windowed / "slices.npy", "prev_buffer_data": paths.prev_buffer / "data.npy"}
    ssl = config.ssl
    settings = {
        "stage": config.continual.stages[paths.name].as_params(),
        "val_fraction": ssl.val_fraction,
        "batch_size": ssl.batch_size,
    }
    augment = ssl.stage_augment.get(paths.name, ssl.augment)
    if augment != "sample":  # only when set: checkpoints of the default keep the keys they always had
        settings["augment"] = augment
    if ssl.audit_fraction:  # likewise: it changes the training patients only when it holds any out
        settings["audit_fraction"] = ssl.audit_fraction
    return digests(whole, sampled, settings)


def under_torchrun() -> bool:
    """Whether this process is one rank that torchrun started (it sets LOCAL_RANK and TORCHELASTIC_RUN_ID)."""
    return "LOCAL_RANK" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_command(stage: str, params: Path, distributed: DistributedConfig) -> list[str]:
    """`cssl pretrain --stage <stage>` again, as `python -m torch.distributed.run`: nproc_per_node ranks on each of
    nnodes nodes, meeting at rdzv_endpoint (c10d), or on one node at 127.0.0.1 on a free port (never a public
    interface). No restarts: a crashed stage is rerun by DVC / Prefect and resumes from its checkpoint."""
    endpoint = distributed.rdzv_endpoint or f"127.0.0.1:{_free_port()}"
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", str(distributed.nnodes), "--nproc-per-node", str(distributed.nproc_per_node),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--max-restarts", "0",
        "-m", "flows.cli", "pretrain", "--stage", stage, "--params", str(params),
    ]  # fmt: skip


def run_pretrain(stage: str, config: ProjectConfig) -> dict[str, Any]:
    """Load the previous model, build the stage's loaders and strategy, train (resuming), save the outputs.

    Under torchrun every rank trains (per-rank batch = ssl.batch_size / processes); rank 0 alone opens the
    MLflow run and writes the model, split and metrics. Other ranks return the same summary without writing.
    """
    from cssl_core.data.stage import batch_augmenter, held_out_warning, stage_loaders
    from cssl_core.distributed import rank_from_env
    from cssl_core.models.io import load_model, save_model
    from cssl_core.replay.directory import read_buffer
    from cssl_core.strategies import build_strategy
    from cssl_core.strategies.nopeek_penalty import with_privacy_penalty
    from cssl_core.train import train_stage
    from cssl_core.train.history import stage_summary, write_history

    paths, ssl, train = config.continual.paths(stage), config.ssl, config.ssl.stage_train[stage]
    augment = ssl.stage_augment.get(stage, ssl.augment)
    where = rank_from_env()
    model, _ = load_model(paths.prev_model)
    loaders, split = stage_loaders(
        paths.windowed, model.config.img_size, ssl.val_fraction, ssl.batch_size // where.world_size, ssl.workers,
        train.seed, augment, ssl.audit_fraction,
    )  # fmt: skip
    # replay.privacy.mode adversarial adds a NoPeek penalty on the lower encoder; the other modes act at export
    strategy = with_privacy_penalty(build_strategy(ssl.strategy, dict(ssl.strategy_options)), config.replay.privacy)
    replay = read_buffer(paths.prev_buffer)
    name, identity = f"pretrain@{stage}", _identity(paths, ssl.strategy, strategy)
    if where.is_main:
        run = tracking.stage_run(name, _run_params(identity, config, model, replay), tags=_tags(paths, ssl.strategy))
    else:
        run = contextlib.nullcontext()
    with run:
        started = time.perf_counter()
        result = train_stage(
            model, strategy, loaders, train, paths.checkpoints,
            _reporter(name, train.epochs) if where.is_main else None,
            inputs=input_digests(paths, config), stage_index=paths.index, stage_name=stage, replay=replay,
            augment=batch_augmenter(augment, model.config.img_size),
            backend=ssl.distributed.backend,
        )  # fmt: skip
        if not where.is_main:
            return stage_summary(result, time.perf_counter() - started, len(loaders["train"]))
        _say_what_happened(name, result)
        tracking.log_params({"checkpoint_key": result.checkpoint_dir.name, "lower_frozen": model.lower_frozen})
        if paths.model.exists():
            shutil.rmtree(paths.model)
        description = {**identity, "lower_frozen": model.lower_frozen, "model_config": model.config.to_dict()}
        save_model(paths.model, model, {**description, "seed": train.seed, "stage_index": paths.index})
        write_json(paths.split, split)
        warning = held_out_warning(split, stage)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        summary = stage_summary(result, time.perf_counter() - started, len(loaders["train"]))
        paths.metrics("pretrain").parent.mkdir(parents=True, exist_ok=True)
        write_json(paths.metrics("pretrain"), summary)
        write_history(paths.metrics("pretrain", "-history.csv"), result.history)
        tracking.log_metrics({f"final_{k}": v for k, v in summary.items() if isinstance(v, int | float)})
        tracking.log_artifacts(paths.model, "model")
        if result.checkpoint is not None and result.checkpoint.exists():
            tracking.log_artifact(result.checkpoint, "checkpoint")
    return summary


def _identity(paths: StagePaths, strategy_name: str, strategy: Any) -> dict[str, Any]:
    """What a stage's model is: saved in its model.json and logged as MLflow params."""
    return {
        "stage": paths.name,
        "prev": paths.prev,
        "cohort": paths.cohort,
        "window": paths.window,
        "strategy": strategy_name,
        "strategy_options": strategy.options,
        "keeps_raw_images": strategy.keeps_raw_images,
    }


def _run_params(identity: dict[str, Any], config: ProjectConfig, model: Any, replay: Any) -> dict[str, Any]:
    stage = identity["stage"]
    return {
        **identity,
        "train": config.ssl.stage_train[stage].to_dict(),
        "model": model.config.to_dict(),
        "batch_size": config.ssl.batch_size,
        "augment": config.ssl.stage_augment.get(stage, config.ssl.augment),
        "replay_samples": 0 if replay is None else len(replay),
        "nopeek_weight": identity["strategy_options"].get("nopeek_weight", 0.0),
    }


def _tags(paths: StagePaths, strategy_name: str) -> dict[str, str]:
    return {"cssl.cohort": paths.cohort, "cssl.window": paths.window, "cssl.strategy": strategy_name}


def _reporter(name: str, epochs: int):
    """The loop's per-epoch callback: MLflow metrics and one progress line."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()}, step=epoch)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith(("loss/", "val/")))
        print(f"{name} epoch {epoch + 1}/{epochs}: {shown}", flush=True)

    return report


def _say_what_happened(name: str, result: Any) -> None:
    """What the checkpoint store did: adopted the flat layout, evicted old configurations, resumed or reused."""
    if result.adopted is not None:
        print(f"{name}: moved checkpoints of the earlier layout into {result.adopted}", flush=True)
    for old, size in result.evicted:
        print(
            f"{name}: removed the checkpoints of an older configuration ({old}, {size / 1e6:.1f} MB) "
            "to keep ssl.train.keep_checkpoints",
            flush=True,
        )
    if result.shared_from is not None:
        print(f"{name}: took the finished run shared in {result.shared_from} (no epoch trained)", flush=True)
    elif result.resumed_from is not None and result.epochs_run == 0:
        print(f"{name}: reused the finished run in {result.checkpoint_dir} (no epoch trained)", flush=True)
    elif result.resumed_from:
        print(f"{name}: resumed after epoch {result.resumed_from} from {result.checkpoint_dir}", flush=True)
