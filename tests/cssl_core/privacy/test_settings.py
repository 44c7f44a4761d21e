"""The privacy block as the audit stage and `cssl check` both read it (cssl_core/privacy/settings.py)."""

from __future__ import annotations

import pytest

from cssl_core.privacy.settings import AuditConfig, audit_settings, gate_settings


def test_the_gate_defaults_to_warn_and_reads_thresholds_as_floats():
    none = {"max_ssim_p95": None, "max_ssim_over_baseline": None, "max_reid_auc": None, "max_membership_auc": None}
    assert gate_settings({}) == {"mode": "warn", **none}  # an earlier release's block keeps its meaning
    assert gate_settings({"mode": "fail", "max_ssim_p95": 1, "max_membership_auc": 0.6}) == {
        **none,
        "mode": "fail",
        "max_ssim_p95": 1.0,
        "max_membership_auc": 0.6,
    }


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"max_ssim": 0.5}, r"params.yaml privacy.gate: unknown key\(s\) \['max_ssim'\]"),
        ({"mode": "stop"}, r"privacy.gate.mode must be one of \('fail', 'warn'\), got 'stop'"),
        ({"max_reid_auc": True}, r"privacy.gate.max_reid_auc must be a number \(or null to skip\), got True"),
        ({"max_ssim_p95": "0.5"}, r"privacy.gate.max_ssim_p95 must be a number"),
        ({"max_ssim_over_baseline": 1.5}, r"privacy.gate.max_ssim_over_baseline bounds .* between 0 and 1; got 1.5"),
        ({"max_membership_auc": -3}, r"privacy.gate.max_membership_auc bounds the patient-level .* got -3"),
    ],
)
def test_a_bad_gate_is_refused_naming_the_key(gate, message):
    with pytest.raises(ValueError, match=message):
        gate_settings(gate)


def test_audit_settings_put_seed_and_max_rows_into_the_audit_config():
    block = {"attacker_cohort": "c", "seed": 3, "max_rows": 8, "queries": 4, "attack": {"decoder_steps": 5}}
    resolved = audit_settings(block)
    assert resolved["attacker_cohort"] == "c" and resolved["queries"] == 4
    assert resolved["config"] == AuditConfig(seed=3, max_rows=8, decoder_steps=5)
    assert resolved["gate"]["mode"] == "warn"
    assert audit_settings({"attacker_cohort": "c"})["config"].max_rows == 32  # the audit stage's default


@pytest.mark.parametrize(
    ("block", "error", "message"),
    [
        ({"attacker_cohort": "c", "atack": {}}, ValueError, r"privacy: unknown key\(s\) \['atack'\]"),
        ({"seed": 0}, KeyError, "privacy.attacker_cohort is not set"),
        (None, KeyError, "privacy.attacker_cohort is not set"),
        ({"attacker_cohort": "c", "attack": {"seed": 1}}, ValueError, "seed and max_rows belong to privacy itself"),
        ({"attacker_cohort": "c", "attack": {"attackers": ["x"]}}, ValueError, "attackers must be a non-empty"),
        ({"attacker_cohort": "c", "gate": {"mode": "x"}}, ValueError, "privacy.gate.mode"),
    ],
)
def test_a_bad_privacy_block_is_refused(block, error, message):
    with pytest.raises(error, match=message):
        audit_settings(block)
