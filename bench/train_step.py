"""Does the loader keep the model busy? Throughput and data-wait of a finetune stage on this CPU.

Prints one JSON line. Synthetic uint8 slices (default 2000 x 96 x 96) are written to a temporary
`slices.npy` and read back through `WindowedSlices` (memory map) + `train_transforms` + `make_loader`, then
the `tiny` MAE trains with the finetune strategy through the real `train_stage` (checkpoints included, in the
same temporary directory), for each loader worker count. Epoch 1 includes starting the workers and filling
the prefetch queue; epoch 2 (persistent workers) is the steady state and is what `images_per_s`,
`data_wait_fraction` and `step_ms` report. `compute_ms` = step_ms * (1 - data_wait_fraction): the step
without waiting. The machine may be shared: the load average before and after is reported beside the figures.

Usage: python bench/train_step.py [--workers 0 1 2] [--steps 30] [--batch 32] [--preset tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cssl_core.data import WindowedSlices, make_loader, train_transforms
from cssl_core.models import MAEConfig, MaskedAutoencoder
from cssl_core.strategies import FinetuneStrategy
from cssl_core.train import TrainConfig, train_stage


def _write_slices(directory: Path, n: int, size: int, seed: int) -> Path:
    """Smooth random images (not white noise, so resizing and jitter do realistic work)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, size // 8, size // 8), dtype=np.uint8)
    slices = np.lib.format.open_memmap(directory / "slices.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    slices[:] = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    slices.flush()
    del slices
    return directory


def _augment_ms(dataset: WindowedSlices, samples: int = 200) -> float:
    start = time.perf_counter()
    for i in range(samples):
        dataset[(i % len(dataset), i)]
    return (time.perf_counter() - start) / samples * 1e3


def _run(root: Path, preset: str, workers: int, steps: int, batch: int, seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    config = MAEConfig.from_preset(preset)
    model = MaskedAutoencoder(config)
    dataset = WindowedSlices(root, rows=np.arange(steps * batch), transform=train_transforms(config.img_size))
    loader = make_loader(dataset, batch, workers=workers, seed=seed)
    epochs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=root) as checkpoints:
        train_stage(
            model,
            FinetuneStrategy(),
            {"train": loader},
            TrainConfig(epochs=2, lr=1e-4, seed=seed),
            checkpoints,
            lambda epoch, metrics: epochs.append(metrics),
        )
    del loader  # stop the persistent workers before the next configuration starts its own

    def figures(metrics: dict[str, float]) -> dict[str, float]:
        step_ms = metrics["epoch_time_s"] / steps * 1e3
        wait = metrics["data_wait_fraction"]
        return {
            "images_per_s": round(metrics["images_per_s"], 1),
            "data_wait_fraction": round(wait, 4),
            "step_ms": round(step_ms, 1),
            "compute_ms": round(step_ms * (1 - wait), 1),
        }

    return {"workers": workers, **figures(epochs[1]), "first_epoch": figures(epochs[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-slices", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps * args.batch > args.n_slices:
        parser.error("--steps * --batch must not exceed --n-slices")
    torch.set_num_threads(args.threads)
    size = MAEConfig.from_preset(args.preset).img_size
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cssl-bench-") as tmp:
        root = _write_slices(Path(tmp), args.n_slices, size, args.seed)
        augment_ms = _augment_ms(WindowedSlices(root, transform=train_transforms(size)))
        results = [_run(root, args.preset, w, args.steps, args.batch, args.seed) for w in args.workers]
    print(
        json.dumps(
            {
                "bench": "train_step",
                "preset": args.preset,
                "strategy": "finetune",
                "batch": args.batch,
                "steps_per_epoch": args.steps,
                "slices": [args.n_slices, size, size],
                "torch_threads": args.threads,
                "cpu_count": os.cpu_count(),
                "augment_ms_per_sample": round(augment_ms, 3),
                "results": results,
                "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "torch": torch.__version__,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
