"""One directory that several checkouts of the project share, for results that are a pure function of their
inputs and costly to recompute.

Why: `cssl compare` runs every variant x seed as a DVC experiment in its own temporary copy of the project. The
first stage trains the same weights under every strategy, and those weights then score the same probes; DVC
cannot see that (the strategy is among each stage's params), so without a shared place every experiment would
retrain and re-evaluate it. Entries are keyed by digests of everything that determines them and written whole
(temporary name + rename), so a reader never takes a partial or a foreign entry. Unset: nothing is shared, and
every stage computes what it needs, as in a plain `dvc repro`.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARE_ENV = "CSSL_SHARE"


def share_dir(kind: str) -> Path | None:
    """`$CSSL_SHARE/<kind>` (e.g. checkpoints, probes), or None when the variable is unset or empty."""
    value = os.environ.get(SHARE_ENV, "").strip()
    return Path(value) / kind if value else None
