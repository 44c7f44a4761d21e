"""One checkpoint directory per training configuration, the most recently used few kept.

A stage's checkpoints live in `<root>/<key>/`, `key` a digest of everything that determines the training
run (its inputs and its settings). Trying another configuration therefore opens another directory instead
of wiping the first, and going back finds the first one again: an unfinished run resumes, a finished one is
reused without training. `keep` bounds the disk: when a new configuration needs room, the directories used
least recently (by modification time, which every save and every use refreshes) are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FINGERPRINT_FILE = "fingerprint.json"  # the full fingerprint behind a directory's key, for people reading it
INPUTS_FILE = "inputs.json"  # the input digests of the flat layout (before one directory per configuration)
LEGACY = "legacy"
KEY_LENGTH = 16


def fingerprint_key(fingerprint: Mapping[str, Any]) -> str:
    """A short, stable digest of a JSON-able fingerprint (same content, same key, in any process)."""
    canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def evict(root: Path, keep: int, current: Path) -> list[tuple[Path, int]]:
    """Remove the least recently used directories under `root` so that at most `keep` remain, never `current`.

    Returns (directory, bytes) of each removed one.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    others = [p for p in root.iterdir() if p.is_dir() and p != current] if root.is_dir() else []
    others.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)  # newest first
    removed = []
    for old in others[keep - 1 :]:
        size = _size(old)
        shutil.rmtree(old)
        removed.append((old, size))
    return removed


def checkpoint_dir(root: str | Path, fingerprint: Mapping[str, Any], keep: int) -> tuple[Path, list[tuple[Path, int]]]:
    """The directory of `fingerprint` under `root` (created, marked most recently used) and what was evicted.

    Eviction happens here, before training, so the bound holds while the new run writes its checkpoints.
    """
    root = Path(root)
    directory = root / fingerprint_key(fingerprint)
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / FINGERPRINT_FILE
    if not record.exists():
        record.write_text(json.dumps(fingerprint, indent=2, sort_keys=True, default=str) + "\n")
    os.utime(directory)  # a reused directory counts as recently used even when nothing is written to it
    return directory, evict(root, keep, directory)


def adopt_loose_checkpoints(root: str | Path) -> Path | None:
    """Move checkpoint files lying directly in `root` (the flat layout before one directory per
    configuration) into the directory their own fingerprint names, so an upgrade resumes them rather than
    retraining; files whose fingerprint cannot be read go to `legacy` (eviction removes it in time).

    Returns where they went, None when there were none.
    """
    from cssl_core.train.checkpoint import load_latest  # torch: only when a checkpoint is actually read

    root = Path(root)
    files = [p for p in root.iterdir() if p.is_file()] if root.is_dir() else []
    if not files:
        return None
    key = LEGACY
    record = root / INPUTS_FILE
    state = load_latest(root)
    if state is not None and record.is_file() and "fingerprint" in state:
        try:
            key = fingerprint_key({"inputs": json.loads(record.read_text()), "training": state["fingerprint"]})
        except ValueError:
            key = LEGACY
    target, n = root / key, 1
    while target.exists():
        target, n = root / f"{key}-{LEGACY}-{n}", n + 1
    target.mkdir()
    for path in root.iterdir():
        if path.is_file():
            os.replace(path, target / path.name)
    return target
