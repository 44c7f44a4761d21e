"""How many augmented slices per second per CPU core can the loader deliver? Per-sample versus on-the-batch.

Prints one JSON line. Synthetic smooth uint8 slices (default 2000 x 224 x 224) are written to a temporary
`slices.npy` and read through the memory map by `WindowedSlices` + `make_loader`, for each worker count:

- `sample` (today's path, `ssl.augment: sample`): each slice is augmented on the CPU by `train_transforms`
  (MONAI: random resized crop, resize, flip, intensity jitter) in the loader, then batched as float32;
- `batch` (`ssl.augment: batch`): the loader only batches the stored uint8 slices; the batch goes to
  `--device` and `augment_batch` does the same operations there on the whole batch;
- `stored` (with `--modes stored`): the batch path's CPU side alone (memory map -> uint8 batch -> device), i.e.
  what the loader cores must deliver when the augmentation runs on a GPU.

Each run first takes `--warmup` batches (worker start, page cache), then times `--batches` batches up to a
device synchronise. `slices_per_s_per_core` divides by the cores that did the CPU work: the workers, or the
main process when there are none (with workers > 0 on the batch path the main process also augments: on a
CPU device that work is on the main core, counted as one more core). The machine may be shared: the load
average before and after is in the output.

Usage: python bench/loader.py [--device cpu|cuda] [--workers 0 1 2] [--batches 20] [--batch 64] [--size 224]
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
from cssl_core.data.batch_augment import augment_batch


def write_slices(directory: Path, n: int, size: int, seed: int) -> Path:
    """Smooth random uint8 images (blocks of 8 px, not white noise) so that resizing does realistic work."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, -(-size // 8), -(-size // 8)), dtype=np.uint8)
    slices = np.lib.format.open_memmap(directory / "slices.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    slices[:] = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :size, :size]
    slices.flush()
    del slices
    return directory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(root: Path, mode: str, workers: int, batch: int, batches: int, warmup: int, device: torch.device,
        size: int, seed: int) -> dict[str, object]:
    """Time `batches` augmented batches of one (mode, workers) configuration after `warmup` batches."""
    if mode == "sample":
        dataset = WindowedSlices(root, transform=train_transforms(size, seed))
    else:
        dataset = WindowedSlices(root, as_stored=True)
    loader = make_loader(dataset, batch, workers, seed, pin_memory=device.type == "cuda")
    iterator = iter(loader)

    def step() -> torch.Tensor:
        item = next(iterator)
        images = item["image"].to(device, non_blocking=True)
        if mode == "batch":
            images = augment_batch(images, item["seed"], size)
        elif mode == "stored":
            images = images.float()  # only to pass the shape check below: no augmentation
        return images

    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        out = step()
    _sync(device)
    seconds = time.perf_counter() - started
    assert out.shape[:2] == (batch, 1) and out.dtype == torch.float32, (out.shape, out.dtype)
    cores = max(1, workers) + (1 if mode == "batch" and workers > 0 and device.type == "cpu" else 0)
    per_s = batches * batch / seconds
    return {
        "mode": mode,
        "workers": workers,
        "cores": cores,
        "slices_per_s": round(per_s, 1),
        "slices_per_s_per_core": round(per_s / cores, 1),
        "ms_per_batch": round(seconds / batches * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", choices=("sample", "batch", "stored"), default=["sample", "batch"])
    parser.add_argument("--n", type=int, default=2000, help="stored slices")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device; use --device cpu")
    device = torch.device(args.device)
    torch.set_num_threads(1)  # per-core figures: the main process's augmentation on one core, like a worker's
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="cssl-bench-loader-") as tmp:
        root = write_slices(Path(tmp), args.n, args.size, args.seed)
        for mode in args.modes:
            for workers in args.workers:
                results.append(run(root, mode, workers, args.batch, args.batches, args.warmup, device,
                                   args.size, args.seed))
    best = {mode: max((r["slices_per_s_per_core"] for r in results if r["mode"] == mode), default=None)
            for mode in args.modes}
    print(json.dumps({
        "bench": "loader",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "n": args.n, "size": args.size, "batch": args.batch, "batches": args.batches,
        "results": results,
        "best_slices_per_s_per_core": best,
        "load_avg_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }))


if __name__ == "__main__":
    main()
