"""Per-epoch training checkpoints that a crash can never leave half-written, and that survive one that is.

A checkpoint is written to a temporary file in the same directory and fsynced; then the previous `last.pt`
becomes `prev.pt` and the temporary file becomes `last.pt`, both by `os.replace`: readers see whole files
only, even after SIGKILL or power loss. The previous checkpoint is kept because something other than this
writer (a full disk, a manual copy, a bad sector) can still damage `last.pt`: then loading moves the damaged
file aside (`last.pt.corrupt-1`, never deleted), says so in one line on stderr, and falls back to the newest
checkpoint that loads, or to a fresh start. Everything in a checkpoint is a tensor, a number, a string or a
container of those, so it loads with `torch.load(weights_only=True)` (no arbitrary pickle from a checkpoint
directory). RNG states are stored so that strategies drawing from the global generators continue exactly
where they stopped.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "cssl-train-checkpoint"
VERSION = 1
LAST = "last.pt"
PREV = "prev.pt"  # the checkpoint before last.pt, the fallback when last.pt does not load
CORRUPT_SUFFIX = ".corrupt-"  # a file that did not load is renamed <name>.corrupt-<n>
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


def _write_temporary(obj: dict[str, Any], directory: Path, name: str) -> Path:
    """torch.save into a fsynced temporary sibling of `directory/name`, removed again if the write fails."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return Path(tmp_name)


def atomic_save(obj: dict[str, Any], path: Path) -> Path:
    """torch.save through a temporary sibling + fsync + os.replace."""
    path = Path(path)
    tmp = _write_temporary(obj, path.parent, path.name)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    """Write `state` (must hold "epoch": completed epochs) as last.pt, the old last.pt becoming prev.pt.

    The new file is complete on disk before either rename, and a crash between the two renames leaves
    prev.pt (the old last) and no last.pt, which `load_latest` reads as "resume from prev.pt".
    With `keep_epoch`, also epoch-NNNN.pt.
    """
    directory = Path(directory)
    payload = {"format": FORMAT, "version": VERSION, **state}
    last = directory / LAST
    tmp = _write_temporary(payload, directory, LAST)
    try:
        if last.exists():
            os.replace(last, directory / PREV)
        os.replace(tmp, last)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reason(error: BaseException) -> str:
    """The first sentence of an error, on one line (torch's zip errors go on for a paragraph)."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = text.split(". ")[0]
    return text if len(text) <= 160 else text[:157] + "..."


def move_aside(path: Path) -> Path:
    """Rename `path` to the first free `<name>.corrupt-<n>`: out of the way of every reader, never deleted."""
    n = 1
    while (aside := path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")).exists():
        n += 1
    os.replace(path, aside)
    return aside


def _epoch_files(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the epoch-NNNN.pt files, newest first."""
    found = []
    for path in directory.glob("epoch-*.pt"):
        try:
            found.append((int(path.stem.removeprefix("epoch-")), path))
        except ValueError:
            continue
    return sorted(found, reverse=True)


def load_latest(
    directory: str | Path,
    map_location: str | torch.device = "cpu",
    warn: Callable[[str], None] = _stderr,
) -> dict[str, Any] | None:
    """The newest checkpoint in `directory` that loads, or None when none does (the caller starts afresh).

    last.pt is the newest when it loads. Otherwise the newest of prev.pt and the per-epoch files (kept with
    `keep_epoch_checkpoints`) that loads. Every file that does not load is moved aside (see `move_aside`)
    with one line to `warn`, the last of which says what training does next.
    """
    directory = Path(directory)
    failures: list[tuple[Path, Path, str]] = []

    def attempt(path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            return _load(path, map_location)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - any unreadable file is set aside, the next one tried
            failures.append((path, move_aside(path), _reason(error)))
            return None

    found, source = attempt(directory / LAST), LAST
    if found is None:
        found, source = attempt(directory / PREV), PREV
        newer = [(epoch, path) for epoch, path in _epoch_files(directory) if found is None or epoch > found["epoch"]]
        for _, path in newer:
            state = attempt(path)
            if state is not None:
                found, source = state, path.name
                break
    if failures:
        outcome = f"resuming from {source} (epoch {found['epoch']})" if found else "training from the start"
        for i, (path, aside, reason) in enumerate(failures):
            tail = f"; {outcome}" if i == len(failures) - 1 else ""
            warn(f"warning: checkpoint {path} does not load ({reason}): moved aside to {aside.name}{tail}")
    return found
