"""Probe results shared between the experiments of a comparison (`$CSSL_SHARE/probes`, cssl_core.share).

Why: the probes of an encoder are a function of its weights, the `eval` params and the labelled tasks' data.
In a comparison every strategy's first stage has the same weights (cssl_core.strategies.base.training_identity),
so evaluate@<first stage> would score the same encoder once per strategy; the fine-tuning family makes that the
largest single cost of an experiment. The first experiment of a seed stores its probe results under a key of
exactly those inputs; the others read them. Entries are written whole (atomic_io), so a half-written one is
never read, and `cssl compare` empties the share at the start of every run, so no entry outlives the code that
computed it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cssl_core.atomic_io import write_json
from cssl_core.train.digests import digest_file

TASK_FILES = ("index.parquet", "meta.json")  # read whole
TASK_ARRAYS = ("slices.npy", "masks.npy")  # digested by size + head + tail (a rewrite changes them)


def task_digests(windowed_dirs: Mapping[str, Path]) -> dict[str, dict[str, str]]:
    """{task: {file: digest}} of every labelled task's windowed files that the probes read."""
    out = {}
    for task, directory in windowed_dirs.items():
        files = {name: digest_file(directory / name) for name in TASK_FILES if (directory / name).is_file()}
        files.update(
            {name: digest_file(directory / name, whole=False) for name in TASK_ARRAYS if (directory / name).is_file()}
        )
        out[task] = files
    return out


def probe_key(encoder: str, eval_params: Mapping[str, Any], tasks: Mapping[str, Any], with_pixels: bool) -> str:
    """The digest of everything a probe row depends on: the model's weights digest, the eval block, the tasks'
    data digests, and whether the raw-pixel reference is included."""
    identity = {"encoder": encoder, "eval": dict(eval_params), "tasks": dict(tasks), "with_pixels": with_pixels}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def shared_result(
    share: Path | None, key: str, compute: Callable[[], dict[str, Any]], say: Callable[[str], None] = print
) -> dict[str, Any]:
    """`compute()`, or the result stored under `key` in `share` by an earlier call with the same key; a result
    computed here is stored for the next one. `share` None: always computed, nothing stored."""
    if share is None:
        return compute()
    entry = share / f"{key}.json"
    if entry.is_file():
        try:
            result = json.loads(entry.read_text())
        except (OSError, ValueError):
            result = None  # unreadable: computed again and rewritten below
        if isinstance(result, dict):
            say(f"probe results of this encoder taken from {entry} (computed by another experiment)")
            return result
    result = compute()
    entry.parent.mkdir(parents=True, exist_ok=True)
    write_json(entry, result)
    return result
