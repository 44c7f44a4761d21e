"""The `dp` buffer mode: calibrated noise on bounded per-patient contributions, accounted by Opacus's RDP
accountant, composed across stages through the buffer's ledger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cssl_core.replay.buffer import ReplayBuffer, concat_buffers, load_buffer, save_buffer
from cssl_core.replay.modes.dp import bound_per_patient, clip_tokens, composed_epsilon, noise_multiplier
from cssl_core.replay.release import ReleaseConfig, release
from tasks.privacy_audit import privacy_spend


def classic_rdp_epsilon(sigma: float, mechanisms: int, delta: float) -> float:
    """Independent reference: the Gaussian mechanism's RDP (alpha / 2 sigma^2 per release, Mironov 2017) composed
    and converted with the classic bound eps = rdp + log(1/delta) / (alpha - 1), minimised over alpha. Opacus
    converts with a tighter bound, so its epsilon must be at most this one (and not far below)."""
    alphas = np.linspace(1.01, 400, 40_000)
    return float(np.min(mechanisms * alphas / (2 * sigma**2) + math.log(1 / delta) / (alphas - 1)))


def cohort(n_patients: int = 12, per_patient: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((n_patients * per_patient, 16, 8)).astype(np.float32) * 0.5 + 0.2
    return latents, np.repeat(np.arange(n_patients), per_patient)


@pytest.mark.parametrize("epsilon", [8.0, 1.0])
def test_the_release_spends_the_target_epsilon_by_the_accountant_and_an_independent_bound(epsilon):
    latents, patients = cohort()
    out = release(latents, patients, ReleaseConfig(mode="dp", dp_epsilon=epsilon), seed=3)
    spent = out.accounting
    assert spent["unit"] == "patient" and spent["mechanisms"] == 3 and spent["delta"] == pytest.approx(0.1 / 120)
    assert epsilon * 0.98 <= spent["epsilon"] <= epsilon * 1.001
    reference = classic_rdp_epsilon(spent["noise_multiplier"], spent["mechanisms"], spent["delta"])
    assert spent["epsilon"] <= reference <= spent["epsilon"] * 1.35


def test_a_release_that_is_mostly_noise_says_so_in_one_line_and_a_large_one_does_not():
    from cssl_core.replay.modes import buffer_mode

    mode = buffer_mode("dp")
    small = release(*cohort(n_patients=6), ReleaseConfig(mode="dp", dp_epsilon=8.0), seed=3).accounting
    # the figure is the noise sd on a mean coordinate over the clip: sigma x k x clip sqrt(tokens x channels) / n
    expected = small["noise_multiplier"] * 4 * math.sqrt(8) * math.sqrt(16) / small["slices_used"] / 1.0
    assert small["noise_to_clip"] == pytest.approx(expected, rel=1e-3) and small["noise_to_clip"] > 1
    line = mode.release_warning("s1", small)
    assert line.startswith("note: replay.privacy dp: buffer s1's stored means are mostly noise (6 patients;")
    assert "\n" not in line and "dp_epsilon" in line
    large = release(*cohort(n_patients=400), ReleaseConfig(mode="dp", dp_epsilon=8.0), seed=3).accounting
    assert large["noise_to_clip"] < 1 and mode.release_warning("s1", large) is None
    assert buffer_mode("aggregate").release_warning("s1", small) is None  # only a mode that adds noise warns


def test_noise_follows_epsilon_and_is_absent_only_in_the_limit():
    latents, patients = cohort()
    truth = clip_tokens(latents[bound_per_patient(patients, 4, np.random.default_rng([3, 17]))], math.sqrt(8))
    errors = {}
    for epsilon in (1e5, 8.0, 0.5):
        out = release(latents, patients, ReleaseConfig(mode="dp", dp_epsilon=epsilon), seed=3)
        assert out.latents.shape == (1, 16, 8) and out.spread.shape == (1, 16, 8) and out.counts.dtype == np.int32
        errors[epsilon] = float(np.abs(out.latents[0].astype(np.float32) - truth.mean(axis=0)).mean())
    assert errors[1e5] < 0.01 < errors[8.0] < errors[0.5]


def test_a_patient_contributes_at_most_k_slices_chosen_without_looking_at_values():
    latents, patients = cohort()
    config = ReleaseConfig(mode="dp", dp_max_slices_per_patient=3, dp_clusters=3, dp_iterations=2)
    out = release(latents, patients, config, seed=1)
    used = np.concatenate(out.members)
    assert np.bincount(patients[np.unique(used)]).max() <= 3
    assert out.accounting["mechanisms"] == 2 * 2 + 3 and len(out.latents) == 3
    changed = release(latents * -3.0 + 1.0, patients, config, seed=1)  # other values, same patients
    kept = np.unique(np.concatenate(changed.members))
    assert np.array_equal(kept, np.unique(used))
    again = release(latents, patients, config, seed=1)
    assert np.array_equal(again.latents, out.latents)  # the audit rebuilds it


def test_knobs_are_checked_whichever_mode_is_chosen():
    with pytest.raises(ValueError, match=r"replay.privacy.dp_epsilon must be a number > 0"):
        ReleaseConfig(mode="none", dp_epsilon=0)
    with pytest.raises(ValueError, match=r"replay.privacy.dp_delta must be a number in \(0, 1\)"):
        ReleaseConfig(dp_delta=2.0)
    with pytest.raises(ValueError, match=r"replay.privacy.dp_max_slices_per_patient must be an integer >= 1"):
        ReleaseConfig(dp_max_slices_per_patient=0)


def test_the_ledger_travels_with_the_buffer_and_stages_compose(tmp_path):
    latents, patients = cohort()
    buffers = []
    for index, stage in enumerate(("s1", "s2")):
        out = release(latents, patients, ReleaseConfig(mode="dp", dp_epsilon=4.0), seed=index)
        n = len(out.latents)
        buffers.append(ReplayBuffer("latent", out.latents, [stage] * n, ["lung"] * n, spread=out.spread,
                                    counts=out.counts, ledger=[{"stage": stage, **out.accounting}]))  # fmt: skip
    save_buffer(concat_buffers(buffers), tmp_path / "b")
    ledger = load_buffer(tmp_path / "b").ledger
    assert [e["stage"] for e in ledger] == ["s1", "s2"]
    spend = privacy_spend(ledger, "s2")
    assert spend["stage_epsilon"] == pytest.approx(4.0, rel=0.02)
    assert 4.0 < spend["total_epsilon"] < 8.0  # RDP composes tighter than adding epsilons
    assert spend["total_epsilon"] == pytest.approx(composed_epsilon(ledger, spend["total_delta"]), abs=1e-4)
    assert noise_multiplier(4.0, spend["stage_delta"], 3) == pytest.approx(ledger[1]["noise_multiplier"])
    assert privacy_spend([], "s1") is None
