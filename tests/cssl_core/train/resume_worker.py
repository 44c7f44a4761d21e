"""One micro training stage, as a script: the resume test runs it in a subprocess and SIGKILLs it mid-epoch.

`run_stage` is also called in-process by the test, so that the killed, resumed and uninterrupted runs share
every line of setup code.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cssl_core.data import WindowedSlices, make_loader, train_transforms
from cssl_core.strategies import FinetuneStrategy
from cssl_core.train import TrainConfig, TrainResult, train_stage
from tests.cssl_core.train.fixtures import micro_model

EPOCHS, BATCH, SEED = 3, 8, 5


class StallingFinetune(FinetuneStrategy):
    """Finetune that, from its `stall_at`-th batch on, writes a marker and then hangs (waiting to be killed)."""

    def __init__(self, stall_at: int, marker: Path) -> None:
        super().__init__()
        self.stall_at, self.marker, self.calls = stall_at, marker, 0

    def observe(self, batch):
        self.calls += 1
        if self.calls >= self.stall_at:
            self.marker.write_text(str(self.calls))
            time.sleep(600)
        return super().observe(batch)


def run_stage(data: Path, checkpoints: Path, workers: int, strategy: FinetuneStrategy | None = None) -> TrainResult:
    model = micro_model(seed=SEED)
    dataset = WindowedSlices(data, transform=train_transforms(32))
    loader = make_loader(dataset, BATCH, workers=workers, seed=SEED)
    config = TrainConfig(epochs=EPOCHS, lr=2e-3, warmup_epochs=1.0, seed=SEED)
    return train_stage(model, strategy or FinetuneStrategy(), {"train": loader}, config, checkpoints)


def configuration_dir(checkpoints: Path) -> Path:
    """The one configuration directory train_stage keyed under the checkpoint root."""
    (directory,) = [p for p in checkpoints.iterdir() if p.is_dir()]
    return directory


def final_weights(checkpoints: Path) -> dict[str, torch.Tensor]:
    return torch.load(configuration_dir(checkpoints) / "last.pt", weights_only=True)["model"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("checkpoints", type=Path)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--stall-at", type=int, required=True)
    parser.add_argument("--marker", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run_stage(args.data, args.checkpoints, args.workers, StallingFinetune(args.stall_at, args.marker))


if __name__ == "__main__":
    main()
