"""One call that runs every attack on a replay buffer, at bounded cost, and returns plain figures.

Why one entry point: a privacy statement about a buffer ("a latent buffer plus the shared model gives the slices
back") has to be recomputed whenever the model, the split block or the selection changes, and compared across
runs; that needs the same attacks, budgets and seed every time, and a flat dict a stage can write as JSON or
log as metrics. A seeded sample of at most `max_rows` rows keeps the cost independent of the buffer size.

Division of knowledge, kept visible in the code: the attacks (ridge, decoder, gradient, baseline, the finding
classifier, the linkage score) see only the buffer, the shared model and the attacker's own slices; the victims'
true slices, their labels and the membership of the linkage queries go to scoring alone.

An image buffer (er / der / medcoss) stores the slices themselves: its "reconstruction" is the stored pixels
(attacker "stored", SSIM 1 against the true slices), and linkage compares pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cssl_core.models.mae import MaskedAutoencoder
from cssl_core.privacy.baseline import predict_mean
from cssl_core.privacy.common import (
    as_slices,
    check_latents,
    check_model,
    check_slice_size,
    deterministic,
    encode,
    sample_rows,
)
from cssl_core.privacy.decoder import train_decoder
from cssl_core.privacy.findings import FindingClassifier, finding_auc
from cssl_core.privacy.gradient import gradient_invert
from cssl_core.privacy.linkage import latent_linkage_scores, pixel_linkage_scores, reid_auc
from cssl_core.privacy.membership import likelihood_ratio_scores, patient_membership
from cssl_core.privacy.ridge import fit_ridge
from cssl_core.privacy.scoring import score, summarise
from cssl_core.privacy.settings import LATENT_ATTACKERS as LATENT_ATTACKERS  # re-exported: it was defined here
from cssl_core.privacy.settings import AuditConfig
from cssl_core.replay.buffer import ReplayBuffer

STORED = "stored"  # the image buffer's "attacker": the stored pixels themselves
BASELINE = "baseline"


@dataclass
class AuditResult:
    """The figures, plus what a caller may want to draw (`figure.draw_reconstructions`) or time."""

    figures: dict[str, Any]
    rows: np.ndarray  # (k,) audited buffer positions
    truth: np.ndarray  # (k, S, S) their true slices
    reconstructions: dict[str, np.ndarray] = field(default_factory=dict)  # attacker -> (k, S, S)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per attack (not in figures: not seeded)


def run_audit(
    model: MaskedAutoencoder | None,
    buffer: ReplayBuffer,
    truth: np.ndarray,
    attacker_slices: np.ndarray,
    *,
    config: AuditConfig | None = None,
    attacker_labels: np.ndarray | None = None,
    truth_labels: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    query_is_member: np.ndarray | None = None,
    query_patient: np.ndarray | None = None,
) -> AuditResult:
    """Attack `buffer` with every configured attacker and score the outcome.

    Args:
        model: the shared MAE that produced the latents (required for a latent buffer; unused for images).
        buffer: the replay buffer: latents (n, tokens, dim) float16, or images (n, S, S).
        truth: (n, S, S) the victims' true slices, row for row with the buffer (scoring only).
        attacker_slices: (m, S, S) the attacker's own slices (other patients, same kind of CT).
        config: budgets and seed.
        attacker_labels: (m,) 0/1/-1 finding labels of the attacker's slices, for finding inference (or None).
        truth_labels: (n,) 0/1/-1 the victims' true findings (scoring only; or None).
        queries: (q, S, S) another scan of known patients, for re-identification (or None).
        query_is_member: (q,) bool, whether each query's patient has rows in the buffer (scoring only).
        query_patient: (q,) an integer per query's patient (scoring only), for the patient-level membership AUC
            with its interval (cssl_core.privacy.membership); None skips it.
    """
    config = config or AuditConfig()
    if not isinstance(buffer, ReplayBuffer):
        raise ValueError(f"buffer must be a ReplayBuffer, got {type(buffer).__name__}")
    n = len(buffer)
    if n == 0:
        raise ValueError("the buffer is empty: nothing to audit")
    true_all = as_slices(truth, "true slices")
    if true_all.shape[0] != n:
        raise ValueError(f"need one true slice per buffer row: {true_all.shape[0]} for {n} rows")
    attacker = as_slices(attacker_slices, "attacker slices")
    if attacker.shape[1:] != true_all.shape[1:]:
        raise ValueError(f"attacker slices {attacker.shape[1:]} and true slices {true_all.shape[1:]} differ in size")
    if buffer.kind == "latent":
        model = check_model(model)
        check_slice_size(model, attacker, "attacker slices")
        check_latents(model, buffer.data[:1], "buffer latents")
    if (attacker_labels is None) != (truth_labels is None):
        raise ValueError("give attacker_labels and truth_labels together (or neither)")
    if (queries is None) != (query_is_member is None):
        raise ValueError("give queries and query_is_member together (or neither)")

    rows = sample_rows(n, config.max_rows, config.seed)
    truth_rows = true_all[rows]
    figures: dict[str, Any] = {
        "kind": buffer.kind,
        "seed": config.seed,
        "n_buffer": n,
        "n_rows": int(rows.size),
        "n_attacker": int(attacker.shape[0]),
    }
    result = AuditResult(figures=figures, rows=rows, truth=truth_rows)
    with deterministic(config.seed):
        result.reconstructions[BASELINE] = predict_mean(attacker, rows.size)
        if buffer.kind == "image":
            result.reconstructions[STORED] = as_slices(np.asarray(buffer.data[rows]), "stored images")
            figures.update({"decoder_steps": 0, "gradient_steps": 0})
        else:
            _attack_latents(model, np.asarray(buffer.data[rows]), attacker, config, result)
        for name, images in result.reconstructions.items():
            figures.update(summarise(score(images, truth_rows), name))
        _findings(result, attacker, config, attacker_labels, truth_labels, true_rows=truth_rows, rows=rows)
        _linkage(model, buffer, attacker, queries, query_is_member, result, query_patient)
    return result


def audit_buffer(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """`run_audit(...).figures`: the plain, JSON-ready dict of figures (same arguments as `run_audit`)."""
    return run_audit(*args, **kwargs).figures


def _sig(value: float) -> float:
    """Six significant digits: small losses keep their magnitude, and figures stay readable in JSON."""
    return float(f"{float(value):.6g}")


def _timed(result: AuditResult, name: str, started: float) -> None:
    result.seconds[name] = round(time.perf_counter() - started, 3)


def _attack_latents(
    model: MaskedAutoencoder, latents: np.ndarray, attacker: np.ndarray, config: AuditConfig, result: AuditResult
) -> None:
    figures, recon = result.figures, result.reconstructions
    if "ridge" in config.attackers:
        started = time.perf_counter()
        ridge = fit_ridge(model, attacker, alpha=config.ridge_alpha, flips=config.flips)
        recon["ridge"] = ridge.predict(check_latents(model, latents, "buffer latents"))
        _timed(result, "ridge", started)
    if "decoder" in config.attackers:
        started = time.perf_counter()
        trained = train_decoder(
            model,
            attacker,
            steps=config.decoder_steps,
            batch_size=config.decoder_batch_size,
            lr=config.decoder_lr,
            width=config.decoder_width,
            depth=config.decoder_depth,
            heads=config.decoder_heads,
            flips=config.flips,
            seed=config.seed,
        )
        recon["decoder"] = trained.predict(check_latents(model, latents, "buffer latents"))
        figures["decoder_final_train_mse"] = _sig(np.mean(trained.losses[-10:]))
        _timed(result, "decoder", started)
    figures["decoder_steps"] = config.decoder_steps if "decoder" in config.attackers else 0
    if "gradient" in config.attackers:
        started = time.perf_counter()
        init = recon[BASELINE] if config.gradient_init == "mean" else recon[config.gradient_init]
        inverted = gradient_invert(
            model,
            latents,
            init,
            steps=config.gradient_steps,
            lr=config.gradient_lr,
            tv_weight=config.gradient_tv_weight,
        )
        recon["gradient"] = inverted.images
        figures["gradient_init"] = config.gradient_init
        figures["gradient_latent_loss_start_p50"] = _sig(np.median(inverted.latent_loss_start))
        figures["gradient_latent_loss_end_p50"] = _sig(np.median(inverted.latent_loss_end))
        _timed(result, "gradient", started)
    figures["gradient_steps"] = config.gradient_steps if "gradient" in config.attackers else 0


def _findings(
    result: AuditResult,
    attacker: np.ndarray,
    config: AuditConfig,
    attacker_labels: np.ndarray | None,
    truth_labels: np.ndarray | None,
    *,
    true_rows: np.ndarray,
    rows: np.ndarray,
) -> None:
    """AUC of the attacker's finding classifier on each reconstruction vs on the true slices."""
    figures = result.figures
    keys = ("finding_auc_true", "finding_auc_recon", "finding_attacker")
    figures.update(dict.fromkeys(keys))
    if attacker_labels is None or truth_labels is None:
        return
    labels_all = np.asarray(truth_labels)
    if labels_all.shape != (figures["n_buffer"],):
        raise ValueError(f"truth_labels must have one label per buffer row ({figures['n_buffer']},)")
    labels = labels_all[rows]
    classifier = FindingClassifier(config.finding_pooled_size, config.finding_c).fit(attacker, attacker_labels)
    figures["finding_auc_true"] = finding_auc(classifier, true_rows, labels)
    attackers = [name for name in result.reconstructions if name != BASELINE]
    for name in attackers:
        figures[f"{name}_finding_auc"] = finding_auc(classifier, result.reconstructions[name], labels)
    best = max(attackers, key=lambda name: (figures[f"{name}_ssim_p50"], name))  # the strongest reconstruction
    figures["finding_attacker"] = best
    figures["finding_auc_recon"] = figures[f"{best}_finding_auc"]


def _linkage(
    model: MaskedAutoencoder | None,
    buffer: ReplayBuffer,
    attacker: np.ndarray,
    queries: np.ndarray | None,
    query_is_member: np.ndarray | None,
    result: AuditResult,
    query_patient: np.ndarray | None = None,
) -> None:
    """Membership AUC over the WHOLE buffer (the question is whether a patient is in it, not in the sample): per
    query slice (reid_auc) and per patient with a bootstrap interval (membership_*). Against cluster statistics
    the patient-level attack is the likelihood ratio of the patient's latents, not the nearest row."""
    figures = result.figures
    figures["reid_auc"], figures["n_queries"] = None, 0
    if queries is None or query_is_member is None:
        return
    started = time.perf_counter()
    if buffer.kind == "image":
        scores = pixel_linkage_scores(np.asarray(buffer.data), queries, attacker)
    else:
        scores = latent_linkage_scores(model, np.asarray(buffer.data), queries, attacker)
    figures["reid_auc"] = reid_auc(scores, np.asarray(query_is_member))
    figures["n_queries"] = int(scores.size)
    if query_patient is not None:
        attack = "nearest row"
        if buffer.holds_clusters:
            attack = "likelihood ratio"
            own = encode(model, as_slices(queries, "query slices"))
            stored = (np.asarray(buffer.data), np.asarray(buffer.spread), np.asarray(buffer.counts))
            scores = likelihood_ratio_scores(own, *stored, reference=encode(model, attacker))
        found = patient_membership(scores, np.asarray(query_is_member), np.asarray(query_patient))
        figures["membership_attack"] = attack
        figures.update({f"membership_{key}": value for key, value in found.items()})
    _timed(result, "linkage", started)
