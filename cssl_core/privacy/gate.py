"""The privacy gate of `audit@<stage>`: does a replay buffer give back more than params.yaml allows?

Like the quality gate, it decides on figures already written to disk (data/privacy/<stage>.json), so a
stopped `dvc repro` leaves the file that explains it. Two figures are checked: the 95th percentile SSIM of
the strongest reconstruction attack (how close the best-reconstructed slices come to the true ones) and the
re-identification AUC (can a known patient be told to be in the buffer). `mode: fail` raises
`PrivacyGateError` (one line, expected by the CLI), which stops the DAG before the next stage trains on the
buffer; `mode: warn` prints the same line as a warning and lets the pipeline go on.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from cssl_core.privacy.config import GATE_MODES, gate_settings

MODES = GATE_MODES  # privacy.gate.mode; the block's rules live in cssl_core/privacy/config.py (gate_settings)
ATTACK_NAMES = ("ridge", "decoder", "gradient", "stored")


class PrivacyGateError(Exception):
    """A replay buffer leaks more than privacy.gate allows (mode: fail); the message is one line."""


def strongest_ssim(figures: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """(attacker, SSIM p95) of the attack whose reconstructions come closest; the baseline is not an attack."""
    found = [(figures[f"{name}_ssim_p95"], name) for name in ATTACK_NAMES if f"{name}_ssim_p95" in figures]
    if not found:
        return None, None
    value, name = max(found)
    return name, float(value)


def check(figures: Mapping[str, Any], gate: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's verdict: the checked figures, the thresholds, and one reason per exceeded threshold."""
    settings = gate_settings(gate)
    attacker, ssim = strongest_ssim(figures)
    reid = figures.get("reid_auc")
    reasons = []
    if settings["max_ssim_p95"] is not None and ssim is not None and ssim > settings["max_ssim_p95"]:
        reasons.append(f"{attacker} SSIM p95 {ssim:.3f} > privacy.gate.max_ssim_p95 {settings['max_ssim_p95']}")
    if settings["max_reid_auc"] is not None and reid is not None and reid > settings["max_reid_auc"]:
        reasons.append(f"re-identification AUC {reid:.3f} > privacy.gate.max_reid_auc {settings['max_reid_auc']}")
    # the patient-level test (cssl_core.privacy.membership) answers the same question as re-identification, per
    # patient and, against cluster statistics, with the stronger likelihood-ratio attack: the same threshold
    membership = figures.get("membership_auc")
    if settings["max_reid_auc"] is not None and membership is not None and membership > settings["max_reid_auc"]:
        reasons.append(f"patient membership AUC {membership:.3f} ({figures.get('membership_attack')}, "
                       f"{figures.get('membership_n_members')} vs {figures.get('membership_n_non_members')} patients) "
                       f"> privacy.gate.max_reid_auc {settings['max_reid_auc']}")  # fmt: skip
    return {**settings, "ssim_p95": ssim, "ssim_attacker": attacker, "reid_auc": reid, "membership_auc": membership,
            "passed": not reasons, "reasons": reasons}


def enforce(verdict: Mapping[str, Any], buffer: str, figure: str, report: str) -> None:
    """Raise (fail) or warn (warn) with one line naming the buffer, the figure and the threshold exceeded."""
    if verdict["passed"]:
        return
    line = (
        f"privacy gate: buffer {buffer} leaks: {'; '.join(verdict['reasons'])} (see {figure} and {report}); "
        "do not share this buffer, or change the buffer (replay.*, ssl.strategy) and rerun"
    )
    if verdict["mode"] == "fail":
        raise PrivacyGateError(line)
    print(f"warning: {line} [privacy.gate.mode: warn]", file=sys.stderr, flush=True)
