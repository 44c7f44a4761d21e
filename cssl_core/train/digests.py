"""Digests of the files a stage trains on: the input half of a checkpoint's fingerprint.

Why: the loop keys checkpoint directories by what determines a run. Its settings are in the TrainConfig; its
data are files DVC rewrites between runs, so a rewritten upstream (another prev model, another buffer) must
open another directory instead of resuming a checkpoint trained on the old one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SAMPLE_BYTES = 1 << 20


def digest_file(path: Path, whole: bool = True) -> str:
    """sha256 of a file, or of its size + first and last MiB (`whole=False`: large arrays; cheap, and a
    rewrite changes it)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if whole or size <= 2 * SAMPLE_BYTES:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        else:
            digest.update(str(size).encode())
            digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(size - SAMPLE_BYTES)
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def input_digests(
    whole: Mapping[str, Path], sampled: Mapping[str, Path], params: Mapping[str, Any]
) -> dict[str, Any]:
    """{name: digest} of every `whole` file, every existing `sampled` file (head + tail), and `params`
    (the params outside the TrainConfig that change what the stage trains on)."""
    digests: dict[str, Any] = {name: digest_file(path) for name, path in whole.items()}
    digests.update({name: digest_file(path, whole=False) for name, path in sampled.items() if path.exists()})
    digests["params"] = dict(params)
    return digests
