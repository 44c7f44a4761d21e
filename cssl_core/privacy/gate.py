"""The privacy gate of a replay buffer (`gate@<stage>`): does it give back more than params.yaml allows?

It is its own DVC stage (gate@<stage>, tasks/privacy_gate.py) after the audit, deciding on figures already on
disk (data/privacy/<stage>.json): editing a threshold re-runs the verdict in seconds, not the attacks, and
never the training after it, which depends only on the clearance the gate writes (constant content while
the buffer may be used). The figures checked: the strongest reconstruction attack's 95th-percentile SSIM
(absolute, and above the attacker's mean-slice guess, which the black background of CT lifts to 0.55-0.68),
the slice-level re-identification AUC and the patient-level membership AUC. An AUC counts as a leak when it is
above its threshold *and* the attack beats chance with 95 % confidence (the lower end of the interval over
patients above 0.5): with the few patients a stage holds out, an AUC of 0.61 is as often chance as not, and a gate
that stops the pipeline on chance teaches users to switch it off. An AUC above its threshold whose interval still
includes chance is written to the verdict as `inconclusive` and printed, with the way to settle it (more held-out
patients, ssl.audit_fraction); an AUC without an interval is judged on its value alone. `mode: fail` raises
`PrivacyGateError` (one line, expected by the CLI), which stops the DAG before the next stage trains on the
buffer; `mode: warn` prints the same line as a warning and lets the pipeline go on.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from cssl_core.privacy.settings import GATE_MODES, gate_settings

MODES = GATE_MODES  # privacy.gate.mode; the block's rules live in cssl_core/privacy/settings.py (gate_settings)
ATTACK_NAMES = ("ridge", "decoder", "gradient", "stored")
CHANCE = 0.5  # an AUC whose interval reaches down to here is not evidence that the attack works


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
    baseline = figures.get("baseline_ssim_p95")
    reid = figures.get("reid_auc")
    # the patient-level test (cssl_core.privacy.membership) answers "is this patient in the buffer?" per patient
    # and, against cluster statistics, with the stronger likelihood-ratio attack
    membership = figures.get("membership_auc")
    reasons, leaking, unsettled = [], [], []  # leaking/unsettled: which figures (ssim, reid, membership)
    limit = settings["max_ssim_p95"]
    if limit is not None and ssim is not None and ssim > limit:
        reasons.append(f"{attacker} SSIM p95 {ssim:.3f} > privacy.gate.max_ssim_p95 {limit}")
        leaking.append("ssim")
    limit = settings["max_ssim_over_baseline"]
    if limit is not None and ssim is not None and baseline is not None and ssim - baseline > limit:
        leaking.append("ssim")
        reasons.append(f"{attacker} SSIM p95 {ssim:.3f} is {ssim - baseline:.3f} above the mean-slice guess's "
                       f"{baseline:.3f} > privacy.gate.max_ssim_over_baseline {limit}")  # fmt: skip
    inconclusive = []
    patients = f"{figures.get('membership_n_members')} vs {figures.get('membership_n_non_members')} patients"
    aucs = (("re-identification AUC", reid, "", "reid", "max_reid_auc"),
            ("patient membership AUC", membership, f" ({figures.get('membership_attack')}, {patients})", "membership",
             "max_membership_auc"))  # fmt: skip
    for name, value, context, figure, key in aucs:
        limit, low, high = settings[key], figures.get(f"{figure}_ci_low"), figures.get(f"{figure}_ci_high")
        if limit is None or value is None or value <= limit:
            continue
        if low is None or low > CHANCE:
            reasons.append(f"{name} {value:.3f}{context} > privacy.gate.{key} {limit}")
            leaking.append(figure)
        else:
            unsettled.append(figure)
            inconclusive.append(f"{name} {value:.3f} > privacy.gate.{key} {limit}, but its 95 % interval over "
                                f"{patients} ({low:.2f}-{high:.2f}) includes chance (0.5)")  # fmt: skip
    return {**settings, "ssim_p95": ssim, "ssim_attacker": attacker, "baseline_ssim_p95": baseline,
            "reid_auc": reid, "membership_auc": membership, "passed": not reasons, "reasons": reasons,
            "inconclusive": inconclusive, "leaking": sorted(set(leaking)), "unsettled": unsettled}  # fmt: skip


def verdict_of(report: Mapping[str, Any], gate: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict on an audit report (data/privacy/<stage>.json); a stage without a buffer has nothing to leak."""
    if not report.get("audited"):
        return {**gate_settings(gate), "passed": True, "reasons": [], "note": report.get("note", "nothing audited")}
    return check(report.get("figures") or {}, gate)


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

