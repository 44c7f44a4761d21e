"""The clearance a stage's buffer gets from its privacy gate: what training and evaluation after it depend on.

Its content names only the buffer, so it is byte-identical whenever the buffer may be used: a threshold edit
or a moved figure that keeps the buffer usable leaves it unchanged and DVC retrains nothing. gate@<stage>
writes it for a buffer it lets through (tasks/privacy_gate.py); init, which has no buffer, writes its own.
"""

from __future__ import annotations

from typing import Any

from cssl_core.atomic_io import write_json
from cssl_core.layout import PRIVACY, privacy_clearance


def clearance(stage: str) -> dict[str, Any]:
    return {"buffer": stage, "cleared": True}


def write_clearance(stage: str) -> None:
    """Write data/privacy/<stage>.cleared.json (atomically: a half-written clearance is never trusted)."""
    PRIVACY.mkdir(parents=True, exist_ok=True)
    write_json(privacy_clearance(stage), clearance(stage))
