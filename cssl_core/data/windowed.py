"""The windowed slices of one (cohort, window) as a map-style dataset over a memory map.

A cohort's slices can be larger than RAM, and every loader worker would otherwise hold its own copy. So the
array is opened with `mmap_mode="r"` lazily, on first access *in the process that reads it*, and dropped
when the dataset is pickled into a worker: each worker maps the file itself and the OS page cache is shared.

Keys: an int `i` is position i of the (optional) row subset, transformed with the transform's running RNG
(MONAI's usual behaviour; pass no transform for evaluation and buffer export). A pair `(i, sample_seed)`, as
`EpochSampler` yields, first reseeds the transform, so that a sample's augmentation depends on the seed it
was sent with, not on which worker loaded it or what that worker loaded before: this is what makes an epoch
reproducible with any number of workers, persistent or not.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import Compose, Randomizable
from torch.utils.data import Dataset

from cssl_core.windowing import to_unit

SLICES_FILE = "slices.npy"
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"
_READABLE = (np.dtype(np.uint8), np.dtype(np.float16))

Transform = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def _without_meta_tracking() -> Iterator[None]:
    """MONAI's MetaTensor bookkeeping (affine, applied-operations list) is half the cost of augmenting a slice
    and nothing here reads it. MONAI exposes the switch only as a process-wide flag, so it is restored after."""
    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def reseed(transform: object, seed: int) -> None:
    """Give every random transform in a (nested) MONAI pipeline one shared RandomState seeded with `seed`.

    Sharing one state is deterministic because the transforms run in sequence, and it costs one RandomState
    per sample instead of `Compose.set_random_state`'s one per transform (plus MONAI's per-call checks):
    ~0.05 ms instead of ~0.35 ms, a third of the whole augmentation. `R` is MONAI's documented RNG attribute.
    """
    state = np.random.RandomState(seed)
    stack = [transform]
    while stack:
        current = stack.pop()
        if isinstance(current, Compose):
            stack.extend(current.transforms)
        if isinstance(current, Randomizable):
            current.R = state


class WindowedSlices(Dataset):
    """`data/windowed/<cohort>-<window>/` -> {"image": float32 (1, S, S) in [0, 1], "row": int}.

    `rows` selects (and orders) a subset of the stored slices, e.g. one side of `train_val_split`; "row" in
    a sample is always the row of `slices.npy` / `index.parquet`, never the position in the subset.

    `as_stored=True` (for `ssl.augment: batch`) returns the slice as stored, (1, S, S) uint8 or float16, plus
    its sample seed under "seed", for `batch_augment.augment_batch` to augment the whole batch on the device.
    """

    def __init__(
        self,
        root: str | Path,
        rows: Sequence[int] | np.ndarray | None = None,
        transform: Transform | None = None,
        *,
        as_stored: bool = False,
    ) -> None:
        self.root = Path(root)
        self.path = self.root / SLICES_FILE
        if not self.path.is_file():
            raise FileNotFoundError(f"no {SLICES_FILE} in {self.root} (expected the output of window@...)")
        array = np.load(self.path, mmap_mode="r")  # header only: pages are not read until indexed
        if array.ndim != 3 or array.shape[1] != array.shape[2]:
            raise ValueError(f"{self.path} must hold (N, S, S) slices, got shape {array.shape}")
        if array.dtype not in _READABLE:
            raise ValueError(f"{self.path} has dtype {array.dtype}; expected uint8 or float16")
        self.n_stored, self.size = int(array.shape[0]), int(array.shape[1])
        self.dtype = array.dtype
        del array
        self._check_meta()
        all_rows = np.arange(self.n_stored, dtype=np.int64)
        self.rows = all_rows if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.ndim != 1 or (self.rows.size and (self.rows.min() < 0 or self.rows.max() >= self.n_stored)):
            raise IndexError(f"rows must be a 1-D selection of [0, {self.n_stored})")
        if as_stored and transform is not None:
            raise ValueError("as_stored=True ships the stored slices for augmentation on the batch: pass no transform")
        self.transform = transform
        self.as_stored = as_stored
        self._array: np.ndarray | None = None

    def _check_meta(self) -> None:
        meta_path = self.root / META_FILE
        if not meta_path.is_file():
            return
        meta = json.loads(meta_path.read_text())
        stored = meta.get("n_slices")
        if stored is not None and int(stored) != self.n_stored:
            raise ValueError(f"{meta_path} says n_slices={stored} but {SLICES_FILE} has {self.n_stored}")

    @property
    def array(self) -> np.ndarray:
        """The memory map, opened on first use in this process."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def index(self) -> pd.DataFrame:
        """The rows of index.parquet this dataset covers, in dataset order."""
        return pd.read_parquet(self.root / INDEX_FILE).iloc[self.rows].reset_index(drop=True)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # a worker maps the file itself; never ship the pages through a pipe
        return state

    def __len__(self) -> int:
        return int(self.rows.size)

    def load(self, position: int) -> torch.Tensor:
        """Un-augmented slice at `position` as float32 (1, S, S) in [0, 1]."""
        row = int(self.rows[position])
        pixels = to_unit(np.asarray(self.array[row]), reciprocal=True)
        return torch.from_numpy(pixels).unsqueeze(0)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        position, sample_seed = (key, None) if isinstance(key, int | np.integer) else key
        if self.as_stored:  # stored dtype (uint8: a quarter of the bytes), augmented later on the whole batch
            stored = torch.from_numpy(np.array(self.array[int(self.rows[int(position)])])).unsqueeze(0)
            seed = 0 if sample_seed is None else int(sample_seed)
            return {"image": stored, "row": int(self.rows[int(position)]), "seed": seed}
        image = self.load(int(position))
        if self.transform is not None:
            if sample_seed is not None:
                reseed(self.transform, int(sample_seed))
            with _without_meta_tracking():
                image = self.transform(image)
        return {"image": image, "row": int(self.rows[int(position)])}
