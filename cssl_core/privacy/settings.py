"""The `privacy` block of params.yaml as the audit reads it: the attack budgets (AuditConfig), the gate's
thresholds (`gate_settings`) and the whole block (`audit_settings`), without torch.

Apart from the attacks (cssl_core.privacy.audit), which need torch: params.yaml is validated with these before
every stage command (cssl_core.config), and most stages never run an attack. The audit stage
(tasks/privacy_audit.py, cssl_core/privacy/gate.py) reads the block with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cssl_core.known_keys import reject_unknown_keys

LATENT_ATTACKERS = ("ridge", "decoder", "gradient")
GATE_MODES = ("fail", "warn")  # privacy.gate.mode: stop the DAG, or warn and go on
PRIVACY_KEYS = ("attacker_cohort", "seed", "max_rows", "queries", "attack", "gate")


@dataclass(frozen=True)
class AuditConfig:
    """Budgets and knobs of an audit; every field has a bounded default so an audit never runs away."""

    seed: int = 0
    max_rows: int | None = 64  # seeded sample of buffer rows to attack and score (None: all rows)
    attackers: tuple[str, ...] = LATENT_ATTACKERS  # latent buffers only; an image buffer is never attacked
    flips: bool = True  # attacker data augmented with mirrored slices
    ridge_alpha: float = 1.0
    decoder_steps: int = 200
    decoder_batch_size: int = 32
    decoder_lr: float = 1e-3
    decoder_width: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    gradient_steps: int = 200
    gradient_lr: float = 0.02
    gradient_tv_weight: float = 1e-3
    gradient_init: str = "ridge"  # ridge | decoder | mean: the attacks compose
    # decoder and gradient run until their loss improves by less than this fraction per window (their steps are
    # then a bound on the audit's cost, not the attack's strength); 0: exactly their steps
    converge_tol: float = 0.01
    finding_pooled_size: int = 16
    finding_c: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "attackers", tuple(self.attackers))
        unknown = sorted(set(self.attackers) - set(LATENT_ATTACKERS))
        if unknown or not self.attackers:
            raise ValueError(f"attackers must be a non-empty subset of {LATENT_ATTACKERS}, got {self.attackers}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 (or None for all rows), got {self.max_rows}")
        for name in ("decoder_steps", "decoder_batch_size", "decoder_width", "decoder_depth", "decoder_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.gradient_steps < 0:
            raise ValueError(f"gradient_steps must be >= 0, got {self.gradient_steps}")
        if not 0 <= self.converge_tol < 1:
            raise ValueError(f"converge_tol must be in [0, 1) (0: run every step), got {self.converge_tol}")
        if "gradient" in self.attackers and self.gradient_init != "mean" and self.gradient_init not in self.attackers:
            raise ValueError(
                f"gradient_init {self.gradient_init!r} must be 'mean' or another attacker of this audit"
                f" ({[a for a in self.attackers if a != 'gradient']})"
            )
        if self.gradient_init == "gradient":
            raise ValueError("gradient_init cannot be the gradient attack itself; use ridge, decoder or mean")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AuditConfig:
        """From a params block; an unknown key is an error (a typo must not silently fall back to a default)."""
        reject_unknown_keys(values, cls, "unknown privacy audit key(s)", error=ValueError)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["attackers"] = list(self.attackers)
        return out


GATE_THRESHOLDS = {  # key: what it bounds (privacy.gate; null skips the check)
    "max_ssim_p95": "the strongest attack's SSIM p95 (1: an exact copy)",
    "max_ssim_over_baseline": "how far the strongest attack's SSIM p95 may exceed the attacker's mean-slice guess",
    "max_reid_auc": "the slice-level re-identification AUC (0.5: chance)",
    "max_membership_auc": "the patient-level membership AUC (0.5: chance)",
}


def gate_settings(gate: Mapping[str, Any]) -> dict[str, Any]:
    """The validated privacy.gate block; an unknown key or a bad value is an error, not a silent default.

    Absent thresholds are skipped, so a params.yaml written for an earlier release (max_ssim_p95 and
    max_reid_auc only) keeps its meaning; the shipped params.yaml sets the baseline-relative SSIM rule, because
    the phantoms' black background lifts every SSIM (a mean-slice guess already scores 0.55-0.68).
    """
    known = {"mode", *GATE_THRESHOLDS}
    unknown = sorted(set(gate) - known)
    if unknown:
        raise ValueError(f"params.yaml privacy.gate: unknown key(s) {unknown}; known: {sorted(known)}")
    mode = gate.get("mode", "warn")
    if mode not in GATE_MODES:
        raise ValueError(f"params.yaml privacy.gate.mode must be one of {GATE_MODES}, got {mode!r}")
    out: dict[str, Any] = {"mode": mode}
    for key, meaning in GATE_THRESHOLDS.items():
        value = gate.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"params.yaml privacy.gate.{key} must be a number (or null to skip), got {value!r}")
        if value is not None and not 0.0 <= value <= 1.0:  # 1.7 would never fail a buffer, -3 would fail every one
            raise ValueError(f"params.yaml privacy.gate.{key} bounds {meaning}, so a threshold between 0 and 1; "
                             f"got {value!r}")  # fmt: skip
        out[key] = None if value is None else float(value)
    return out


def audit_settings(block: Mapping[str, Any] | None) -> dict[str, Any]:
    """The privacy block, checked before any work (a typo must not fall back to a default): the attacker
    cohort, the linkage queries, the AuditConfig (with privacy.seed and privacy.max_rows in it) and the gate."""
    block = dict(block or {})
    unknown = sorted(set(block) - set(PRIVACY_KEYS))
    if unknown:
        raise ValueError(f"params.yaml privacy: unknown key(s) {unknown}; known: {sorted(PRIVACY_KEYS)}")
    if not block.get("attacker_cohort"):
        raise KeyError("params.yaml privacy.attacker_cohort is not set: name a cohort whose patients are in no buffer")
    attack = dict(block.get("attack") or {})
    if {"seed", "max_rows"} & set(attack):
        raise ValueError("params.yaml privacy.attack: seed and max_rows belong to privacy itself")
    config = AuditConfig.from_dict({**attack, "seed": int(block.get("seed", 0)), "max_rows": block.get("max_rows", 32)})
    return {
        "attacker_cohort": str(block["attacker_cohort"]),
        "queries": int(block.get("queries", 16)),
        "config": config,
        "gate": gate_settings(block.get("gate") or {}),
    }
