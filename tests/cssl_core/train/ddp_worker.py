"""One micro training stage as a script that runs alone or under torchrun (tests/cssl_core/train/test_ddp.py).

The global batch is GLOBAL_BATCH whatever the process count: each rank loads GLOBAL_BATCH / WORLD_SIZE. Rank 0
writes the stage's history and final weights to `--out` (a JSON file beside the checkpoints). `--stall-at`
makes every rank hang at that step of observe after writing its pid to
`<marker>.<rank>` (the kill/resume test kills them there).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from cssl_core.data import WindowedSlices, make_loader, train_transforms
from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.strategies import build_strategy
from cssl_core.train import TrainConfig, TrainResult, train_stage
from tests.cssl_core.train.fixtures import micro_model, structured_images

EPOCHS, GLOBAL_BATCH, SEED = 3, 8, 5
# latent replay with BKE and Gaussian WKD: both are statistics of the whole replay batch
LATENT_OPTIONS = {"replay_batch_size": 8, "wkd": "gaussian", "bke": True, "lambda_wkd": 1.0}


def latent_buffer(model: torch.nn.Module, n: int = 24) -> ReplayBuffer:
    """Latents of an earlier stage's slices through `model`'s lower blocks (deterministic)."""
    images = torch.from_numpy(structured_images(n, 32, seed=99)).unsqueeze(1)
    with torch.no_grad():
        latents = model.lower(images).half().numpy()
    return ReplayBuffer("latent", latents, np.full(n, "s1"), np.full(n, "lung"))


def run_stage(
    data: Path, checkpoints: Path, strategy_name: str = "finetune", world_size: int = 1, stall_at: int = 0,
    marker: Path | None = None,
) -> TrainResult:  # fmt: skip
    model = micro_model(seed=SEED)
    dataset = WindowedSlices(data, transform=train_transforms(32))
    loader = make_loader(dataset, GLOBAL_BATCH // world_size, workers=0, seed=SEED)
    config = TrainConfig(epochs=EPOCHS, lr=2e-3, warmup_epochs=1.0, seed=SEED)
    if strategy_name == "finetune":
        strategy, stage_index, replay = build_strategy("finetune"), 0, None
    else:
        strategy, stage_index, replay = build_strategy("latent_replay", LATENT_OPTIONS), 1, latent_buffer(model)
    if stall_at:
        observe, calls = strategy.observe, [0]

        def stalling(batch):
            calls[0] += 1
            if calls[0] >= stall_at:
                # the pid: torchrun puts each rank in its own session, so killing torchrun's group misses them
                marker.with_suffix(f".{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
                time.sleep(600)
            return observe(batch)

        strategy.observe = stalling
    return train_stage(
        model, strategy, {"train": loader}, config, checkpoints, stage_index=stage_index, replay=replay
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("checkpoints", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", default="finetune")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stall-at", type=int, default=0)
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    result = run_stage(args.data, args.checkpoints, args.strategy, world, args.stall_at, args.marker)
    if int(os.environ.get("RANK", "0")) == 0:
        args.out.write_text(json.dumps({"history": result.history, "checkpoint": str(result.checkpoint)}))


if __name__ == "__main__":
    main()
