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

Beside the per-row SSIM/PSNR, three figures report (they are not gate rules) what the SSIM alone cannot say:
- `specificity_*`: is the strongest attack's reconstruction closer (SSIM) to its own row's or cluster's member
  slices than to any of NON_MEMBER_POOL of the attacker's slices (scoring.specificity)?
- `model_membership_*`: the loss test against the released model weights, per patient, on the membership
  queries (cssl_core.privacy.model_membership).
- `replay_sample_*`: for cluster buffers (aggregate, dp), what replay actually draws (REPLAY_SAMPLES latents from
  N(mean, sd^2), cssl_core.replay.release.sample_clusters) inverted by the strongest of ridge/decoder and scored
  like specificity; for row buffers replay reads the stored rows, so the stored-row attacks already are this
  figure, and the field is null with the reason in `replay_sample_note`.
Their budgets are fixed constants (below), not params: each costs a few seconds on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from cssl_core.privacy.membership import likelihood_ratio_scores, patient_membership, slice_auc_interval
from cssl_core.privacy.model_membership import model_membership
from cssl_core.privacy.ridge import fit_ridge
from cssl_core.privacy.scoring import score, specificity, summarise
from cssl_core.privacy.settings import LATENT_ATTACKERS as LATENT_ATTACKERS  # re-exported: it was defined here
from cssl_core.privacy.settings import AuditConfig
from cssl_core.replay.buffer import ReplayBuffer

STORED = "stored"  # the image buffer's "attacker": the stored pixels themselves
BASELINE = "baseline"
NON_MEMBER_POOL = 256  # attacker slices (seeded sample) a reconstruction must beat to count as specific
REPLAY_SAMPLES = 16  # latents drawn as replay draws them, spread evenly over the audited clusters
SPECIFIC_ATTACKS = ("ridge", "decoder", "gradient", STORED)  # cssl_core.privacy.gate.ATTACK_NAMES


@dataclass
class AuditResult:
    """The figures, plus what a caller may want to draw (`figure.draw_reconstructions`) or time."""

    figures: dict[str, Any]
    rows: np.ndarray  # (k,) audited buffer positions
    truth: np.ndarray  # (k, S, S) their true slices
    reconstructions: dict[str, np.ndarray] = field(default_factory=dict)  # attacker -> (k, S, S)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per attack (not in figures: not seeded)
    inverters: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)  # latents -> slices


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
    truth_members: list[np.ndarray] | None = None,
    released_model: MaskedAutoencoder | None = None,
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
        truth_members: n arrays (m_i, S, S), per buffer row the slices it was made of (scoring only): a row's
            own slice, a cluster's member slices; None: each row's true slice.
        released_model: the stage's MAE for the loss test on its weights (default: `model`, unwrapped; an
            image buffer has none unless given).
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
    if truth_members is not None and len(truth_members) != n:
        raise ValueError(f"need one member set per buffer row: {len(truth_members)} for {n} rows")

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
        members = [truth_rows[i : i + 1] if truth_members is None else truth_members[r] for i, r in enumerate(rows)]
        pool, figures["specificity_pool"] = non_member_pool(attacker, queries, query_is_member, config.seed)
        _specificity(result, members, pool, config.seed)
        released = model if released_model is None else released_model
        _model_membership(released, queries, query_is_member, query_patient, result)
        _replay_samples(buffer, rows, members, pool, config.seed, result)
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
        result.inverters["ridge"] = ridge.predict
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
            converge_tol=config.converge_tol,
        )
        recon["decoder"] = trained.predict(check_latents(model, latents, "buffer latents"))
        result.inverters["decoder"] = trained.predict
        figures["decoder_final_train_mse"] = _sig(np.mean(trained.losses[-10:]))
        figures["decoder_converged"] = trained.converged
        _timed(result, "decoder", started)
    figures["decoder_steps"] = trained.steps if "decoder" in config.attackers else 0
    figures["decoder_max_steps"] = config.decoder_steps if "decoder" in config.attackers else 0
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
            converge_tol=config.converge_tol,
        )
        recon["gradient"] = inverted.images
        figures["gradient_converged"] = inverted.converged
        figures["gradient_init"] = config.gradient_init
        figures["gradient_latent_loss_start_p50"] = _sig(np.median(inverted.latent_loss_start))
        figures["gradient_latent_loss_end_p50"] = _sig(np.median(inverted.latent_loss_end))
        _timed(result, "gradient", started)
    figures["gradient_steps"] = inverted.steps if "gradient" in config.attackers else 0
    figures["gradient_max_steps"] = config.gradient_steps if "gradient" in config.attackers else 0


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
        low, high = slice_auc_interval(scores, np.asarray(query_is_member), np.asarray(query_patient))
        figures["reid_ci_low"], figures["reid_ci_high"] = low, high
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


def non_member_pool(
    attacker: np.ndarray, queries: np.ndarray | None, query_is_member: np.ndarray | None, seed: int
) -> tuple[np.ndarray, str]:
    """The slices a reconstruction must beat to count as specific, and where they come from.

    The stage's held-out patients (the non-member queries: same cohort and window, never trained on) where the
    audit has them: a reconstruction that merely looks like this cohort beats another cohort's slices too, so
    the attacker's cohort would measure cohort shift, not membership. Without queries, up to NON_MEMBER_POOL of
    the attacker's slices ("attacker_cohort", an upper bound on specificity)."""
    outside = None if query_is_member is None else ~np.asarray(query_is_member, dtype=bool)
    if queries is not None and outside is not None and outside.any():
        return as_slices(np.asarray(queries)[outside], "non-member queries"), "held_out"
    return attacker[sample_rows(len(attacker), NON_MEMBER_POOL, seed)], "attacker_cohort"


def _specificity(result: AuditResult, members: list[np.ndarray], pool: np.ndarray, seed: int) -> None:
    """`specificity_*` of the strongest attack (the gate's: highest SSIM p95): does its reconstruction of a row
    single out that row's member slices among the non-member pool (`non_member_pool`; scoring.specificity)?"""
    started = time.perf_counter()
    figures = result.figures
    found = [(figures[f"{name}_ssim_p95"], name) for name in SPECIFIC_ATTACKS if name in result.reconstructions]
    name = max(found)[1]
    figures["specificity_attacker"] = name
    out = specificity(result.reconstructions[name], members, pool, seed)
    figures.update({f"specificity_{key}": value for key, value in out.items()})
    _timed(result, "specificity", started)


def _model_membership(
    model: Any,
    queries: np.ndarray | None,
    query_is_member: np.ndarray | None,
    query_patient: np.ndarray | None,
    result: AuditResult,
) -> None:
    """`model_membership_*`: the loss test on the released weights (cssl_core.privacy.model_membership), per
    patient on the membership queries; null with `model_membership_note` when there is no model or no queries."""
    figures = result.figures
    keys = ("auc", "ci_low", "ci_high", "n_members", "n_non_members", "loss_members_p50", "loss_non_members_p50")
    figures.update({f"model_membership_{key}": None for key in keys})
    if model is None or queries is None or query_patient is None:
        figures["model_membership_note"] = "no released model or no membership queries with patients"
        return
    started = time.perf_counter()
    found = model_membership(model, as_slices(queries, "query slices"), np.asarray(query_is_member),
                             np.asarray(query_patient))  # fmt: skip
    figures.update({f"model_membership_{key}": value for key, value in found.items()})
    figures["model_membership_note"] = None
    _timed(result, "model_membership", started)


def _replay_samples(
    buffer: ReplayBuffer, rows: np.ndarray, members: list[np.ndarray], pool: np.ndarray, seed: int,
    result: AuditResult,
) -> None:  # fmt: skip
    """`replay_sample_*`: REPLAY_SAMPLES latents drawn from the audited clusters exactly as replay draws them
    (sample_clusters, seeded), inverted by the strongest of the fitted ridge/decoder attackers (highest SSIM p95
    on the stored rows) and scored like specificity against the cluster's member slices."""
    figures = result.figures
    keys = ("attacker", "n", "n_clusters", "rate", "ci_low", "ci_high", "chance", "margin_p50", "member_ssim_p50",
            "non_member_ssim_p50", "member_psnr_p50")  # fmt: skip
    figures.update({f"replay_sample_{key}": None for key in keys})
    if buffer.kind != "latent" or not buffer.holds_clusters:
        figures["replay_sample_note"] = (
            "rows, not clusters: replay reads the stored rows themselves, so the stored-row attacks above are "
            "the inversion of what replay samples"
        )
        return
    usable = [(figures[f"{name}_ssim_p95"], name) for name in ("ridge", "decoder") if name in result.inverters]
    if not usable:
        figures["replay_sample_note"] = "neither ridge nor decoder is among privacy.attack.attackers"
        return
    started = time.perf_counter()
    import torch

    from cssl_core.replay.release import sample_clusters

    name = max(usable)[1]
    owners = np.sort(np.arange(REPLAY_SAMPLES) % len(rows))  # evenly over the audited clusters, cluster by cluster
    per_cluster = np.bincount(owners, minlength=len(rows))
    drawn = sample_clusters(np.asarray(buffer.data[rows]), np.asarray(buffer.spread[rows]), per_cluster,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip
    images = result.inverters[name](drawn.float().numpy())
    out = specificity(images, [members[i] for i in owners], pool, seed)
    figures["replay_sample_attacker"] = name
    figures["replay_sample_n_clusters"] = int(np.count_nonzero(per_cluster))  # one cluster's samples: not independent
    figures.update({f"replay_sample_{key}": out[key] for key in keys if key in out})
    figures["replay_sample_note"] = None
    _timed(result, "replay_samples", started)
