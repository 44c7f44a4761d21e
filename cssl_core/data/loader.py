"""Loaders whose epoch e is a pure function of (seed, e): same order, same augmentations, any worker count.

torch's own recipe (a generator seeded per epoch, worker seeds from it) breaks with persistent workers
(worker seeds are drawn once, at the first epoch of *this process*) and ties augmentations to which worker
loads which sample. Instead `EpochSampler` draws the permutation *and one seed per sample* from (seed,
epoch) in the main process and sends `(position, sample_seed)` keys; the dataset reseeds its transform
from the key. Workers then hold no RNG state that matters, so they can persist across epochs, and a run
resumed at epoch e reproduces epoch e exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cssl_core.data.seeding import derive_seed


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled `(position, sample_seed)` keys for the current epoch; `set_epoch` like DistributedSampler."""

    def __init__(self, n: int, seed: int, epoch: int = 0, shuffle: bool = True) -> None:
        if n < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.seed, self.epoch, self.shuffle = int(n), int(seed), int(epoch), shuffle
        self.rank, self.world_size = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> None:
        """Yield only rank `rank`'s keys of each epoch: the seeded order cut to a multiple of `world_size`,
        then every world_size-th key from `rank` (DistributedSampler's striding, without its padding).

        With per-rank batch b, step s of rank r holds positions s*b*W + r + k*W of the 1-process order, so
        the union over ranks of step s is exactly the 1-process batch of size b*W, and of an epoch its epoch.
        Sample seeds stay keyed by position: a sample is augmented the same way on whichever rank loads it.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if self.n < world_size:
            raise ValueError(f"{self.n} samples cannot be shared among {world_size} processes")
        self.rank, self.world_size = int(rank), int(world_size)

    def keys(self) -> list[tuple[int, int]]:
        order_gen = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
        order = torch.randperm(self.n, generator=order_gen).tolist() if self.shuffle else list(range(self.n))
        aug = np.random.default_rng(derive_seed(self.seed, "augment", self.epoch))
        sample_seeds = aug.integers(0, 2**31 - 1, size=self.n).tolist()
        keys = [(position, sample_seeds[position]) for position in order]
        if self.world_size == 1:
            return keys
        return keys[: len(keys) - len(keys) % self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys())

    def __len__(self) -> int:
        return self.n // self.world_size


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    seed: int,
    epoch: int = 0,
    *,
    shuffle: bool = True,
    drop_last: bool = True,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> DataLoader:
    """A DataLoader for `dataset` (which must accept `(position, sample_seed)` keys, as WindowedSlices does).

    Reuse it across epochs with `set_epoch(loader, e)`; workers persist when `workers > 0`. `drop_last`
    keeps batch statistics (BKE, Gaussian WKD) on full batches.
    """
    n = len(dataset)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last and n < batch_size:
        raise ValueError(f"dataset has {n} samples, fewer than one batch of {batch_size} (drop_last=True)")
    sampler = EpochSampler(n, seed, epoch, shuffle=shuffle)
    extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(derive_seed(seed, "loader", epoch)),
        **extra,
    )


def shard_loader(loader: DataLoader, rank: int, world_size: int) -> None:
    """Make a loader from `make_loader` yield rank `rank`'s share of each epoch (see `EpochSampler.shard`)."""
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, EpochSampler):
        raise TypeError("only loaders made by make_loader (an EpochSampler) can be sharded across processes")
    sampler.shard(rank, world_size)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Point a loader made by `make_loader` at epoch `epoch` (no-op for loaders without an epoch sampler)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
