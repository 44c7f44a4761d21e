"""Reading and writing a stage's replay buffer directory, including the "no buffer" case.

Every stage writes data/buffers/<stage> so that the DAG has the same shape for every strategy; a
strategy that keeps nothing (finetune) or the init stage writes a directory that says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cssl_core.atomic_io import write_json
from cssl_core.replay.buffer import ReplayBuffer, buffer_nbytes, concat_buffers, load_buffer, save_buffer

NO_BUFFER = {"kind": "none", "n": 0, "note": "this strategy keeps no replay buffer"}


def write_no_buffer(directory: Path) -> int:
    """A directory that says "no buffer", so the next stage's dvc.yaml dep exists whatever the strategy."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    write_json(directory / "meta.json", NO_BUFFER)
    return 0


def read_buffer(directory: Path, mmap: bool = True) -> ReplayBuffer | None:
    """The buffer of a directory `write_buffer` or `write_no_buffer` wrote; None when it says "no buffer"."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory}: not a replay buffer (no meta.json); run the export stage first")
    if json.loads(meta_path.read_text()).get("kind") == "none":
        return None
    return load_buffer(directory, mmap=mmap)


def write_buffer(directory: Path, earlier: ReplayBuffer | None, new: ReplayBuffer | None) -> int:
    """Accumulate: the earlier stages' buffer plus this stage's selection; returns bytes on disk."""
    parts = [b for b in (earlier, new) if b is not None and len(b) > 0]
    if not parts:
        return write_no_buffer(directory)
    if directory.exists():
        shutil.rmtree(directory)
    save_buffer(concat_buffers(parts) if len(parts) > 1 else parts[0], directory)
    return buffer_nbytes(directory)
