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
