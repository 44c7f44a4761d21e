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


def shared_root() -> Path | None:
    """Where finished first stages are shared between checkouts ($CSSL_SHARE/checkpoints, cssl_core.share): a
    comparison's experiments each run in a temporary copy of the project with its own data/checkpoints; the
    first one of a seed publishes its finished first stage there by key and the others take it instead of
    training. None: nothing is shared."""
    from cssl_core.share import share_dir

    return share_dir("checkpoints")


def _copy_whole(source: Path, target: Path) -> None:
    """Copy `source` to `target` through cssl_core.atomic_io (temporary sibling, one rename): a reader (another
    experiment) never sees a half-copied checkpoint, even when this process dies mid-copy."""
    from cssl_core.atomic_io import atomic_path

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, size_hint=source.stat().st_size) as temp:
        shutil.copyfile(source, temp)


def fetch_shared(share: Path, directory: Path, last_name: str) -> bool:
    """Copy the finished run published under `share/<key>` (key = directory's name) into `directory` when
    the directory holds no checkpoint of its own; True when it did. The loop then loads it like its own:
    same fingerprint check, zero epochs to run."""
    published = share / directory.name / last_name
    if (directory / last_name).exists() or not published.is_file():
        return False
    _copy_whole(published, directory / last_name)
    record = share / directory.name / FINGERPRINT_FILE
    if record.is_file() and not (directory / FINGERPRINT_FILE).exists():
        _copy_whole(record, directory / FINGERPRINT_FILE)
    return True


def publish_shared(share: Path, directory: Path, last_name: str) -> Path | None:
    """Publish the finished run of `directory` (its last checkpoint and fingerprint record) as
    `share/<key>`, unless that key is published already; where it went, or None."""
    target = share / directory.name
    if (target / last_name).is_file() or not (directory / last_name).is_file():
        return None
    if (directory / FINGERPRINT_FILE).is_file():
        _copy_whole(directory / FINGERPRINT_FILE, target / FINGERPRINT_FILE)
    _copy_whole(directory / last_name, target / last_name)  # last: its presence means "published whole"
    return target
