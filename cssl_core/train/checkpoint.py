"""Per-epoch training checkpoints that a crash can never leave half-written.

A checkpoint is written to a temporary file in the same directory, fsynced, then `os.replace`d onto
`last.pt`: readers see the old file or the new one, never a torn one, even after SIGKILL or power loss.
Everything in it is a tensor, a number, a string or a container of those, so it loads with
`torch.load(weights_only=True)` (no arbitrary pickle from a checkpoint directory). RNG states are stored so
that strategies drawing from the global generators continue exactly where they stopped.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "cssl-train-checkpoint"
VERSION = 1
LAST = "last.pt"
EPOCH_PATTERN = "epoch-{:04d}.pt"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory fds: the rename is still atomic, only not yet durable
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: dict[str, Any], path: Path) -> Path:
    """torch.save through a temporary sibling + fsync + os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and every CUDA device) generator states, in weights_only-safe types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, state: dict[str, Any], *, keep_epoch: bool = False) -> Path:
    """Write `state` (must hold "epoch": completed epochs) as last.pt, and as epoch-NNNN.pt if asked."""
    directory = Path(directory)
    payload = {"format": FORMAT, "version": VERSION, **state}
    last = atomic_save(payload, directory / LAST)
    if keep_epoch:
        atomic_save(payload, directory / EPOCH_PATTERN.format(int(state["epoch"])))
    for stale in directory.glob(".*.tmp"):  # left by a crash in the middle of an earlier save
        stale.unlink(missing_ok=True)
    return last


def _load(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {state.get('version')}; this code reads {VERSION}")
    return state


def load_latest(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest checkpoint in `directory`, or None when there is none.

    last.pt is always the newest (written last, atomically); per-epoch files are only a fallback for a
    last.pt damaged by something other than this writer (a disk error, a manual copy).
    """
    directory = Path(directory)
    candidates = [directory / LAST] + sorted(directory.glob("epoch-*.pt"), reverse=True)
    errors = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return _load(path, map_location)
        except Exception as error:  # noqa: BLE001 - try the next candidate, report all if none loads
            errors.append(f"{path.name}: {error}")
    if errors:
        raise RuntimeError(f"no loadable checkpoint in {directory}: " + "; ".join(errors))
    return None
