from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cssl_core.privacy.audit import AuditConfig, audit_buffer, run_audit
from cssl_core.privacy.common import encode
from cssl_core.replay.buffer import ReplayBuffer

TINY = AuditConfig(
    seed=7,
    max_rows=12,
    decoder_steps=20,
    decoder_width=32,
    decoder_depth=1,
    decoder_heads=2,
    gradient_steps=30,
    finding_pooled_size=8,
)


def _buffer(kind: str, data: np.ndarray) -> ReplayBuffer:
    n = len(data)
    return ReplayBuffer(kind, data, stage=np.array(["s1"] * n), window=np.array(["lung"] * n))


def _with_findings(slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = (np.arange(len(slices)) % 2).astype(np.int8)
    out = slices * 0.6
    out[labels == 1, 4:12, 4:12] += 0.4
    return out, labels


def test_an_image_buffer_gives_its_slices_back_exactly(blobs):
    victims = blobs(20, seed=2)
    stored = np.round(victims * 255).astype(np.uint8)
    truth = stored.astype(np.float32) / 255.0  # the windowed slices the buffer copied
    queries = np.concatenate([truth[:5], blobs(5, seed=3)])

    figures = audit_buffer(
        None, _buffer("image", stored), truth, blobs(40, seed=1), config=TINY,
        queries=queries, query_is_member=np.arange(10) < 5,
    )

    assert figures["kind"] == "image" and figures["n_rows"] == 12 and figures["n_buffer"] == 20
    assert figures["stored_ssim_p50"] > 0.99 and figures["stored_psnr_p50"] == 100.0
    assert figures["baseline_ssim_p50"] < 0.5
    assert figures["decoder_steps"] == 0 and figures["gradient_steps"] == 0
    assert figures["reid_auc"] == 1.0 and figures["n_queries"] == 10
    assert not any(key.startswith(("ridge", "decoder_ssim", "gradient_ssim")) for key in figures)


def test_the_audit_is_deterministic_for_a_seed_and_json_ready(tiny_model, blobs):
    victims, victim_labels = _with_findings(blobs(30, seed=2))
    attacker, attacker_labels = _with_findings(blobs(60, seed=1))
    buffer = _buffer("latent", encode(tiny_model, victims).astype(np.float16))
    queries = np.concatenate([victims[:6], blobs(6, seed=3)])
    kwargs = dict(
        config=TINY, attacker_labels=attacker_labels, truth_labels=victim_labels,
        queries=queries, query_is_member=np.arange(12) < 6,
    )
    rng_before = torch.get_rng_state()

    first = audit_buffer(tiny_model, buffer, victims, attacker, **kwargs)
    second = audit_buffer(tiny_model, buffer, victims, attacker, **kwargs)
    other_seed = audit_buffer(tiny_model, buffer, victims, attacker, **{**kwargs, "config": AuditConfig(
        **{**TINY.to_dict(), "seed": 8}
    )})

    assert first == second
    assert first != other_seed
    assert json.loads(json.dumps(first)) == first
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert first["n_rows"] == 12 and first["decoder_steps"] == 20 and first["gradient_steps"] == 30
    for attacker_name in ("baseline", "ridge", "decoder", "gradient"):
        for metric in ("ssim_p50", "ssim_p95", "psnr_p50", "psnr_p95"):
            assert isinstance(first[f"{attacker_name}_{metric}"], float)
    assert first["ridge_ssim_p50"] > first["baseline_ssim_p50"] + 0.3
    assert first["gradient_latent_loss_end_p50"] < first["gradient_latent_loss_start_p50"]
    assert first["finding_auc_true"] > 0.9
    assert first["finding_attacker"] in ("ridge", "gradient")
    assert first["finding_auc_recon"] > 0.8
    assert first["reid_auc"] == 1.0


def test_random_latents_leak_nothing_beyond_the_mean_slice(tiny_model, blobs):
    victims = blobs(16, seed=2)
    real = encode(tiny_model, victims)
    random_latents = np.random.default_rng(5).normal(real.mean(0), real.std(0), size=real.shape)

    figures = audit_buffer(
        tiny_model, _buffer("latent", random_latents.astype(np.float16)), victims, blobs(60, seed=1),
        config=AuditConfig(**{**TINY.to_dict(), "gradient_init": "mean"}),
    )

    for name in ("ridge", "decoder", "gradient"):
        assert figures[f"{name}_ssim_p50"] < figures["baseline_ssim_p50"] + 0.05, name


def test_the_reconstructions_and_rows_come_back_for_drawing(tiny_model, blobs):
    victims = blobs(20, seed=2)
    buffer = _buffer("latent", encode(tiny_model, victims).astype(np.float16))
    config = AuditConfig(seed=1, max_rows=5, attackers=("ridge",))
    result = run_audit(tiny_model, buffer, victims, blobs(30, seed=1), config=config)
    assert result.rows.tolist() == sorted(result.rows.tolist()) and len(set(result.rows.tolist())) == 5
    assert np.array_equal(result.truth, victims[result.rows])
    assert set(result.reconstructions) == {"baseline", "ridge"}
    assert result.figures["decoder_steps"] == 0 and result.figures["gradient_steps"] == 0


def test_audit_refuses_bad_configs_and_inputs(tiny_model, blobs):
    with pytest.raises(ValueError, match="attackers"):
        AuditConfig(attackers=("ridge", "magic"))
    with pytest.raises(ValueError, match="gradient_init"):
        AuditConfig(attackers=("gradient",), gradient_init="ridge")
    with pytest.raises(ValueError, match="unknown privacy audit key"):
        AuditConfig.from_dict({"max_row": 3})
    with pytest.raises(ValueError, match="max_rows"):
        AuditConfig(max_rows=0)
    victims = blobs(6, seed=2)
    buffer = _buffer("latent", encode(tiny_model, victims).astype(np.float16))
    with pytest.raises(ValueError, match="one true slice per buffer row"):
        audit_buffer(tiny_model, buffer, victims[:5], blobs(10, seed=1), config=TINY)
    with pytest.raises(ValueError, match="together"):
        audit_buffer(tiny_model, buffer, victims, blobs(10, seed=1), config=TINY, truth_labels=np.zeros(6, np.int8))
    with pytest.raises(ValueError, match="MaskedAutoencoder"):
        audit_buffer(None, buffer, victims, blobs(10, seed=1), config=TINY)
    with pytest.raises(ValueError, match="ReplayBuffer"):
        audit_buffer(tiny_model, victims, victims, blobs(10, seed=1), config=TINY)


def test_the_new_figures_of_a_row_buffer_specificity_model_membership_and_no_replay_sampling(tiny_model, blobs):
    from cssl_core.privacy.model_membership import model_membership

    victims = blobs(20, seed=2)
    buffer = _buffer("latent", encode(tiny_model, victims).astype(np.float16))
    queries = np.concatenate([victims[:6], blobs(6, seed=3)])
    patient = np.repeat(np.arange(6), 2)
    config = AuditConfig(seed=1, max_rows=8, attackers=("ridge",))
    result = run_audit(tiny_model, buffer, victims, blobs(40, seed=1), config=config, queries=queries,
                       query_is_member=np.arange(12) < 6, query_patient=patient)  # fmt: skip
    figures = result.figures
    assert figures["specificity_attacker"] == "ridge" and figures["specificity_n"] == 8
    # the pool is the held-out patients' 6 query slices (same cohort), not the attacker's 40 (another cohort)
    assert figures["specificity_pool"] == "held_out" and figures["specificity_n_non_member_pool"] == 6
    assert figures["specificity_members_p50"] == 1.0
    assert figures["specificity_ci_low"] <= figures["specificity_rate"] <= figures["specificity_ci_high"]
    assert figures["specificity_rate"] > figures["specificity_chance"]  # ridge recovers its own slice
    direct = model_membership(tiny_model, queries, np.arange(12) < 6, patient)
    assert {k: figures[f"model_membership_{k}"] for k in direct} == direct
    assert figures["model_membership_n_members"] == 3 and figures["model_membership_note"] is None
    assert figures["replay_sample_rate"] is None and "replay reads the stored rows" in figures["replay_sample_note"]
    assert {"specificity", "model_membership"} <= set(result.seconds) and "replay_samples" not in result.seconds
    assert json.loads(json.dumps(figures)) == figures


def test_replay_samples_of_a_cluster_buffer_are_inverted_and_scored_against_its_members(tiny_model, blobs):
    """Clusters of 4 slices, stored as mean and sd: the samples replay draws are inverted like the means, and
    their specificity is measured against each cluster's own four slices."""
    victims = blobs(24, seed=2)
    latents = encode(tiny_model, victims).reshape(6, 4, *encode(tiny_model, victims[:1]).shape[1:])
    n = len(latents)
    buffer = ReplayBuffer("latent", latents.mean(1).astype(np.float16), stage=np.array(["s1"] * n),
                          window=np.array(["lung"] * n), spread=latents.std(1).astype(np.float16),
                          counts=np.full(n, 4, np.int32))  # fmt: skip
    members = [victims[4 * i : 4 * i + 4] for i in range(n)]
    config = AuditConfig(seed=1, attackers=("ridge", "decoder"), decoder_steps=5, decoder_width=32,
                         decoder_depth=1, decoder_heads=2)  # fmt: skip
    result = run_audit(tiny_model, buffer, victims[::4], blobs(40, seed=1), config=config, truth_members=members)
    figures = result.figures
    assert figures["specificity_members_p50"] == 4.0 and figures["specificity_chance"] == pytest.approx(4 / 44)
    assert figures["specificity_pool"] == "attacker_cohort"  # no queries: the attacker's 40 slices
    assert figures["replay_sample_n"] == 16 and figures["replay_sample_n_clusters"] == 6
    assert figures["replay_sample_note"] is None
    assert figures["replay_sample_attacker"] in ("ridge", "decoder")
    assert figures["replay_sample_ci_low"] <= figures["replay_sample_rate"] <= figures["replay_sample_ci_high"]
    assert 0.0 < figures["replay_sample_member_ssim_p50"] <= 1.0 and figures["replay_sample_member_psnr_p50"] > 0
    assert figures["model_membership_auc"] is None and figures["model_membership_note"]
    again = run_audit(tiny_model, buffer, victims[::4], blobs(40, seed=1), config=config, truth_members=members)
    assert again.figures == figures
    with pytest.raises(ValueError, match="one member set per buffer row"):
        run_audit(tiny_model, buffer, victims[::4], blobs(40, seed=1), config=config, truth_members=members[:2])
