"""The privacy gate's verdict (cssl_core/privacy/gate.py) on an audit's figures, without running an audit."""

from __future__ import annotations

import pytest

from cssl_core.privacy.gate import PrivacyGateError, check, enforce, strongest_ssim, verdict_of

FIGURES = {"ridge_ssim_p95": 0.31, "decoder_ssim_p95": 0.42, "baseline_ssim_p95": 0.9, "reid_auc": 0.7}


def test_the_strongest_attack_is_the_closest_reconstruction_and_the_baseline_is_no_attack():
    assert strongest_ssim(FIGURES) == ("decoder", 0.42)
    assert strongest_ssim({"baseline_ssim_p95": 0.9}) == (None, None)


def test_check_gives_one_reason_per_exceeded_threshold():
    verdict = check(FIGURES, {"max_ssim_p95": 0.4, "max_reid_auc": 0.8, "mode": "fail"})
    assert not verdict["passed"] and verdict["ssim_attacker"] == "decoder"
    assert verdict["reasons"] == ["decoder SSIM p95 0.420 > privacy.gate.max_ssim_p95 0.4"]
    assert check(FIGURES, {"max_ssim_p95": 0.5, "max_reid_auc": None, "mode": "fail"})["passed"]


def test_the_relative_ssim_rule_is_measured_from_the_mean_slice_guess_and_membership_has_its_own_threshold():
    figures = {"ridge_ssim_p95": 0.70, "baseline_ssim_p95": 0.66, "reid_auc": 0.55, "membership_auc": 0.62,
               "membership_attack": "likelihood", "membership_n_members": 8, "membership_n_non_members": 24}
    gate = {"max_ssim_over_baseline": 0.05, "max_reid_auc": 0.6, "max_membership_auc": 0.6, "mode": "fail"}
    verdict = check(figures, gate)
    assert verdict["reasons"] == [
        "patient membership AUC 0.620 (likelihood, 8 vs 24 patients) > privacy.gate.max_membership_auc 0.6"
    ]  # 0.70 is 0.04 above the guess: within the margin although far above any absolute 0.5
    assert check({**figures, "ridge_ssim_p95": 0.72}, gate)["reasons"][0] == (
        "ridge SSIM p95 0.720 is 0.060 above the mean-slice guess's 0.660 > privacy.gate.max_ssim_over_baseline 0.05"
    )
    assert check({**figures, "membership_auc": 0.6}, gate)["passed"]


def test_a_stage_without_a_buffer_passes_with_its_note():
    verdict = verdict_of({"buffer": "s1", "audited": False, "note": "no buffer"}, {"max_reid_auc": 0.6})
    assert verdict["passed"] and verdict["note"] == "no buffer" and verdict["reasons"] == []


def test_enforce_raises_one_line_in_fail_mode_and_warns_in_warn_mode(capsys):
    failing = check(FIGURES, {"max_ssim_p95": 0.4, "max_reid_auc": 0.6, "mode": "fail"})
    with pytest.raises(PrivacyGateError) as caught:
        enforce(failing, "s1", "data/privacy/s1.png", "data/privacy/s1.json")
    assert "\n" not in str(caught.value) and "buffer s1 leaks" in str(caught.value)
    enforce({**failing, "mode": "warn"}, "s1", "data/privacy/s1.png", "data/privacy/s1.json")
    assert "[privacy.gate.mode: warn]" in capsys.readouterr().err


def test_an_auc_above_its_threshold_leaks_only_when_its_interval_clears_chance():
    """The demo's dp buffer at stage 2 gave re-identification AUC 0.609 from 6 vs 4 patients: chance, at that n.
    Above the threshold with an interval reaching 0.5 is inconclusive (printed), not a leak; clear of 0.5 it is."""
    from tasks.privacy_gate import summary_line

    gate = {"max_ssim_p95": None, "max_ssim_over_baseline": None, "max_reid_auc": 0.6, "max_membership_auc": 0.6,
            "mode": "fail"}  # fmt: skip
    base = {"decoder_ssim_p95": 0.03, "baseline_ssim_p95": 0.66, "membership_attack": "likelihood ratio",
            "membership_n_members": 6, "membership_n_non_members": 4}  # fmt: skip
    chance = {**base, "reid_auc": 0.609, "reid_ci_low": 0.31, "reid_ci_high": 0.88, "membership_auc": 0.5,
              "membership_ci_low": 0.12, "membership_ci_high": 0.83}  # fmt: skip
    verdict = check(chance, gate)
    assert verdict["passed"] and verdict["reasons"] == []
    assert verdict["leaking"] == [] and verdict["unsettled"] == ["reid"]  # what the comparison report counts
    assert verdict["inconclusive"] == ["re-identification AUC 0.609 > privacy.gate.max_reid_auc 0.6, but its 95 % "
                                       "interval over 6 vs 4 patients (0.31-0.88) includes chance (0.5)"]
    line = summary_line({**verdict, "buffer": "s2"})
    assert "passed" in line and "inconclusive" in line and "ssl.audit_fraction" in line and "\n" not in line

    evident = {**chance, "membership_auc": 0.93, "membership_ci_low": 0.71, "membership_ci_high": 1.0}
    verdict = check(evident, gate)
    assert not verdict["passed"] and verdict["reasons"] == [
        "patient membership AUC 0.930 (likelihood ratio, 6 vs 4 patients) > privacy.gate.max_membership_auc 0.6"
    ]
    assert verdict["leaking"] == ["membership"] and verdict["unsettled"] == ["reid"]
    no_interval = {**base, "reid_auc": 0.609}  # an audit without patients to resample: judged on the value
    assert check(no_interval, gate)["reasons"] == ["re-identification AUC 0.609 > privacy.gate.max_reid_auc 0.6"]
    below = {**chance, "reid_auc": 0.58}
    assert check(below, gate)["inconclusive"] == []
