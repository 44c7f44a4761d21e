"""`privacy`: the audit of every buffer (audit@<stage>) and its gate.

The attacker cohort is checked against the schedule here, not when audit@<stage> first runs: its patients
must be in no buffer, so no stage may train on it, and its slices must exist in the audited stage's window.
The block itself goes through cssl_core/privacy/settings.py `audit_settings` (AuditConfig, `gate_settings`),
the rules the gate runs too (cssl_core/privacy/gate.py); the audit stage (tasks/privacy_audit.py) reads PrivacyConfig.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.continual import ContinualConfig
from cssl_core.config.errors import MISSING, ConfigError, reused
from cssl_core.privacy.settings import PRIVACY_KEYS, AuditConfig, audit_settings, gate_settings


@dataclass(frozen=True)
class PrivacyConfig:
    attacker_cohort: str
    seed: int
    max_rows: int | None  # buffer rows attacked per stage (None: all)
    queries: int
    attack: Any  # cssl_core.privacy.AuditConfig, with privacy.seed and privacy.max_rows in it
    gate: Mapping[str, Any]  # cssl_core.privacy.settings.gate_settings: mode, max_ssim_p95, max_reid_auc


def check_attacker(block: Any, continual: ContinualConfig, cohorts: tuple[str, ...]) -> None:
    """The cohort the audit attacks with: ingested, and trained on by no stage (its patients would be in a buffer)."""
    privacy = checks.mapping("privacy", block)
    checks.keys("privacy", privacy, PRIVACY_KEYS, required=("attacker_cohort",))
    path = "privacy.attacker_cohort"
    cohort = checks.choice(path, privacy["attacker_cohort"], cohorts, what="an ingested cohort (ingest.cohorts):")
    trained = [s.name for s in continual.stages.values() if s.cohort == cohort]
    if trained:
        free = [c for c in cohorts if c not in {s.cohort for s in continual.stages.values()}]
        instead = f": name one no stage trains on ({', '.join(free)})" if free else ": ingest one no stage trains on"
        raise ConfigError(
            path,
            cohort,
            f"stage {', '.join(trained)} trains on it, so its patients can be in the buffer the audit attacks{instead}",
        )


def parse_privacy(block: Any, continual: ContinualConfig, cohorts: tuple[str, ...]) -> PrivacyConfig:
    check_attacker(block, continual, cohorts)
    privacy = checks.mapping("privacy", block)
    checks.integer("privacy.seed", privacy.get("seed", 0))
    if privacy.get("max_rows") is not None:
        checks.integer("privacy.max_rows", privacy.get("max_rows"), minimum=1)
    queries = checks.integer("privacy.queries", privacy.get("queries", 16), minimum=1)
    attack = checks.mapping("privacy.attack", privacy.get("attack"), optional=True)
    for key in ("seed", "max_rows"):
        if key in attack:
            raise ConfigError(
                f"privacy.attack.{key}", attack[key], f"{key} belongs to privacy itself: move it to privacy.{key}"
            )
    checks.check_fields("privacy.attack", attack, checks.annotations(AuditConfig))
    gate = checks.mapping("privacy.gate", privacy.get("gate"), optional=True)
    with reused("privacy.gate", gate):
        gate_settings(gate)
    key_paths = {key: f"privacy.attack.{key}" for key in attack}
    key_paths.update(seed="privacy.seed", max_rows="privacy.max_rows")  # audit_settings passes them into AuditConfig
    values = {**attack, "seed": privacy.get("seed", 0), "max_rows": privacy.get("max_rows", MISSING)}
    with reused("privacy.attack", values, key_paths):
        resolved = audit_settings(privacy)
    return PrivacyConfig(
        attacker_cohort=resolved["attacker_cohort"],
        seed=resolved["config"].seed,
        max_rows=resolved["config"].max_rows,
        queries=queries,
        attack=resolved["config"],
        gate=MappingProxyType(dict(resolved["gate"])),
    )
