"""Does the loader keep the model busy? Throughput and data-wait of a finetune stage on this CPU.

Prints one JSON line. Synthetic uint8 slices (default 2000 x 96 x 96) are written to a temporary
`slices.npy` and read back through `WindowedSlices` (memory map) + `train_transforms` + `make_loader`, then
the `tiny` MAE trains with the finetune strategy through the real `train_stage` (checkpoints included, in the
same temporary directory), for each loader worker count. Epoch 1 includes starting the workers and filling
the prefetch queue; epoch 2 (persistent workers) is the steady state and is what `images_per_s`,
`data_wait_fraction` and `step_ms` report. `compute_ms` = step_ms * (1 - data_wait_fraction): the step
without waiting. The machine may be shared: the load average before and after is reported beside the figures.

The second part (`strategy_steps`) times one optimiser step (observe + backward + AdamW) of finetune and of
latent_replay with each WKD mode at the same new-data batch, on an in-memory batch so the loader is out of
the picture, and the distillation loss alone (BKE + WKD forward and backward on given student and teacher
features of the replay batch) as a fraction of that latent_replay step.

Usage: python bench/train_step.py [--workers 0 1 2] [--steps 30] [--batch 32] [--preset tiny]
"""

from __future__ import annotations

import argparse
import functools
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


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _train_step(strategy, optimizer, images: torch.Tensor) -> None:
    losses = strategy.observe({"image": images})
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()


def _distill_step(student: torch.Tensor, teacher: torch.Tensor, mode: str) -> None:
    from cssl_core.distill import bke, wkd_loss

    wkd_loss(student, bke(teacher), mode).backward()


def _strategy_steps(preset: str, batch: int, replay_n: int, repeats: int, seed: int) -> dict[str, object]:
    import copy

    from cssl_core.replay.buffer import ReplayBuffer
    from cssl_core.strategies import StageContext, build_strategy
    from cssl_core.train.optim import build_optimizer

    torch.manual_seed(seed)
    config = MAEConfig.from_preset(preset)
    images = torch.rand(batch, 1, config.img_size, config.img_size)
    buffer_images = torch.rand(replay_n, 1, config.img_size, config.img_size)
    results: dict[str, object] = {}
    variants = [("finetune", {})] + [
        (f"latent_replay_{mode}", {"wkd": mode, "replay_batch_size": batch}) for mode in ("gaussian", "ot", "sliced")
    ]
    for label, options in variants:
        model = MaskedAutoencoder(config)
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        name = "latent_replay" if label.startswith("latent_replay") else "finetune"
        replay = None
        if name == "latent_replay":
            model.freeze_lower()
            with torch.no_grad():
                latents = model.lower(buffer_images).half().numpy()
            replay = ReplayBuffer(
                "latent", latents, stage=np.array(["s1"] * replay_n), window=np.array(["w"] * replay_n)
            )
        strategy = build_strategy(name, options)
        generator = torch.Generator().manual_seed(seed)
        strategy.begin_stage(
            StageContext(
                1, "s2", model, teacher=teacher if replay is not None else None, replay=replay, generator=generator
            )
        )
        optimizer = build_optimizer([model], 1e-4)

        results[label] = {
            "step_ms": round(_median_ms(lambda s=strategy, o=optimizer: _train_step(s, o, images), repeats), 2)
        }
        if name == "latent_replay":
            with torch.no_grad():
                z = torch.from_numpy(latents[:batch]).float()
                teacher_features = teacher.upper(z)
            student_features = model.upper(z).detach().requires_grad_(True)
            mode = options["wkd"]

            distill_ms = _median_ms(functools.partial(_distill_step, student_features, teacher_features, mode), repeats)
            results[label]["distill_ms"] = round(distill_ms, 3)
            results[label]["distill_fraction_of_step"] = round(distill_ms / results[label]["step_ms"], 4)
    finetune_ms = results["finetune"]["step_ms"]
    for label in results:
        results[label]["step_vs_finetune"] = round(results[label]["step_ms"] / finetune_ms, 3)
    return {"batch": batch, "replay_batch": batch, "replay_buffer": replay_n, "repeats": repeats, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-slices", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per strategy variant")
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
    strategy_steps = _strategy_steps(args.preset, args.batch, 256, args.repeats, args.seed)
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
                "strategy_steps": strategy_steps,
                "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "torch": torch.__version__,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
