"""Stage `gate@<stage>`: the verdict on a buffer's audit, and the clearance the next stage trains on.

The verdict (data/privacy/<stage>.gate.json: thresholds, checked figures, reasons) is a DVC metric that
`cssl site push` reads. What pretrain@<next> and evaluate@<stage> depend on is the clearance
(data/privacy/<stage>.cleared.json), whose content is the same whenever the gate lets the buffer be used:
a verdict is not a training input, so tightening or loosening a threshold re-runs this stage and the report,
never the training. Under `mode: fail` a leaking buffer gets no clearance, and the stage exits with the
gate's one line, so nothing downstream runs.
"""

from __future__ import annotations

from typing import Any

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.layout import PRIVACY, privacy_clearance, privacy_figure, privacy_report, privacy_verdict
from cssl_core.privacy.clearance import write_clearance
from cssl_core.privacy.gate import enforce, verdict_of
from cssl_core.privacy.report import read_audit_report


def run_privacy_gate(stage: str, config: ProjectConfig) -> dict[str, Any]:
    """Decide on data/privacy/<stage>.json with privacy.gate; write the verdict, then the clearance or stop."""
    # an earlier clearance must not outlive a verdict that refuses (DVC removes it before this stage; a run by hand
    # or by another driver may not)
    privacy_clearance(stage).unlink(missing_ok=True)
    report = read_audit_report(stage)
    verdict = {"buffer": stage, **verdict_of(report, dict(config.privacy.gate))}
    PRIVACY.mkdir(parents=True, exist_ok=True)
    write_json(privacy_verdict(stage), verdict)
    enforce(verdict, stage, str(privacy_figure(stage)), str(privacy_report(stage)))  # fail: raises, no clearance
    write_clearance(stage)
    return verdict


def summary_line(verdict: dict[str, Any]) -> str:
    """The CLI's one line: passed, or the reasons (the warning line has already named them under warn)."""
    if verdict.get("note"):
        return f"gate {verdict['buffer']}: {verdict['note']}"
    state = "passed" if verdict["passed"] else f"LEAKS ({'; '.join(verdict['reasons'])})"
    line = f"gate {verdict['buffer']}: {state} (gate mode {verdict['mode']}) -> {privacy_verdict(verdict['buffer'])}"
    if verdict.get("inconclusive"):  # above a threshold within chance: say so, and how to settle it
        line += (f"; inconclusive: {'; '.join(verdict['inconclusive'])}: hold out more patients "
                 "(ssl.audit_fraction, or a larger cohort) to tell")
    return line
