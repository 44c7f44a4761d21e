"""Images/s of a finetune stage with 1 vs N training processes (torchrun, DDP-style gradient averaging).

Prints one JSON line. For each process count the same global batch trains through the real `train_stage`
(checkpoints included): 1 process as a plain Python process, N > 1 through `python -m torch.distributed.run`
on 127.0.0.1 (gloo on CPU, nccl on CUDA), each rank loading batch / N. On CPU the cores are split between
the ranks (`--threads` in all, threads // N per rank), so the figure says whether data parallelism beats
intra-op threading on the same cores, not what more cores would give. Epoch 1 (startup, first allocation) is
not counted: `images_per_s` is the global throughput of epoch 2. The load average before/after is reported:
the machine may be shared.

Usage: python bench/ddp.py --nproc 1 2 --device cpu [--batch 32] [--steps 10] [--preset tiny] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _worker(args: argparse.Namespace) -> None:
    """One rank (or the only process): train 2 epochs of `steps` global batches, rank 0 writes the metrics."""
    import numpy as np
    import pandas as pd
    import torch

    from cssl_core.data import WindowedSlices, make_loader, train_transforms
    from cssl_core.models import MAEConfig, MaskedAutoencoder
    from cssl_core.strategies import FinetuneStrategy
    from cssl_core.train import TrainConfig, train_stage

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    torch.set_num_threads(max(1, args.threads // world) if args.device == "cpu" else torch.get_num_threads())
    root = Path(args.workdir)
    data = root / "slices"
    if rank == 0 and not (data / "meta.json").exists():
        data.mkdir(parents=True, exist_ok=True)
        n, size = args.batch * args.steps, MAEConfig.from_preset(args.preset).img_size
        rng = np.random.default_rng(0)
        np.save(data / "slices.npy", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        pd.DataFrame({"patient_key": [f"p{i % 8}" for i in range(n)], "series_key": [f"s{i % 8}" for i in range(n)],
                      "slice_index": np.arange(n) // 8, "z_mm": (np.arange(n) // 8).astype(float),
                      "has_mask": np.zeros(n, dtype=bool)}).to_parquet(data / "index.parquet")  # fmt: skip
        meta = {"cohort": "bench", "window": "lung", "dtype": "uint8", "size": size, "n_slices": n}
        (data / "meta.json").write_text(json.dumps(meta))
    while not (data / "meta.json").exists():  # the other ranks wait for rank 0's data
        import time

        time.sleep(0.1)
    torch.manual_seed(0)
    model = MaskedAutoencoder(MAEConfig.from_preset(args.preset))
    size = model.config.img_size
    loader = make_loader(WindowedSlices(data, transform=train_transforms(size)), args.batch // world, 0, seed=0)
    config = TrainConfig(epochs=2, lr=1e-4, warmup_epochs=0.0, seed=0, device=args.device, deterministic=False)
    result = train_stage(model, FinetuneStrategy(), {"train": loader}, config, root / f"ckpt-{world}")
    if rank == 0:
        (root / f"result-{world}.json").write_text(json.dumps(result.history[-1]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per epoch")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    load_before = os.getloadavg()[0]
    out: dict[str, object] = {"bench": "ddp", "device": args.device, "preset": args.preset, "batch": args.batch,
                              "steps": args.steps, "threads": args.threads, "load_before": load_before}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.nproc:
            if args.batch % n:
                raise SystemExit(f"--batch {args.batch} must be divisible by --nproc {n}")
            tail = [str(Path(__file__).resolve()), "--worker", "--workdir", workdir, "--device", args.device,
                    "--batch", str(args.batch), "--steps", str(args.steps), "--preset", args.preset,
                    "--threads", str(args.threads)]  # fmt: skip
            launcher = [sys.executable]
            if n > 1:
                launcher += ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(n),
                             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]  # fmt: skip
            env_n = {**env, "OMP_NUM_THREADS": str(max(1, args.threads // n))}
            subprocess.run([*launcher, *tail], cwd=REPO, env=env_n, check=True, capture_output=True)
            epoch = json.loads((Path(workdir) / f"result-{n}.json").read_text())
            out[f"images_per_s_{n}"] = round(epoch["images_per_s"], 2)
            out[f"epoch_time_s_{n}"] = round(epoch["epoch_time_s"], 3)
    first = args.nproc[0]
    for n in args.nproc[1:]:
        out[f"speedup_{n}_vs_{first}"] = round(out[f"images_per_s_{n}"] / out[f"images_per_s_{first}"], 3)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
