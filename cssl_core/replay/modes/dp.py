"""`dp`: cluster statistics released with a formal (epsilon, delta) guarantee per stage, unit of privacy the patient.

Why the patient and not the slice: the threat the audit measures is membership of a *patient* (a likelihood
test on a patient's latents told members from non-members at AUC 0.935 on `aggregate`), and a patient brings
tens of correlated slices; a slice-level guarantee would be diluted by that many. Every data-dependent step goes
through a Gaussian mechanism on bounded per-patient contributions:

1. Contribution bounding, data-independent: at most `dp_max_slices_per_patient` (k) of a patient's training
   slices, drawn at random by the seed; every token of a latent clipped to L2 norm `dp_clip` x sqrt(channels)
   (`dp_clip` is a per-channel RMS bound), so one slice's latent has L2 norm <= B = dp_clip x sqrt(tokens x
   channels). The stage's own selection (kmeans, herding, ...) is not used: it looks at the data.
2. Centres: data-independent random start, then `dp_iterations` Lloyd steps, each releasing noisy per-cluster
   sums and counts (with one cluster: no step, the centre is not needed).
3. The release: noisy per-cluster counts, sums and sums of squares -> means, sds (diagonal), sizes.

Adding or removing one patient moves the per-cluster sums by at most k x B in L2, the counts by k, the sums of
squares by k x B^2; each of the 2 x dp_iterations + 3 releases adds Gaussian noise of sd sigma x its sensitivity,
and sigma is calibrated with Opacus's RDP accountant (a maintained accountant, not a formula here) so that
their composition spends `dp_epsilon` at delta (`dp_delta`, default 0.1 / the stage's training slices). What a
whole buffer spent across stages is composed the same way from the ledger each stage appends
(`privacy_ledger`, cssl_core.replay.buffer) and reported by the audit.
Replay samples synthetic latents from the noisy means and sds, like `aggregate`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from cssl_core.replay.modes.base import BufferMode, Released

ACCOUNTANT = "opacus.accountants.RDPAccountant (Gaussian mechanism, sample rate 1)"


def noise_multiplier(epsilon: float, delta: float, mechanisms: int) -> float:
    """sigma such that `mechanisms` Gaussian mechanisms of noise multiplier sigma compose to (epsilon, delta)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=1.0,
                                      steps=mechanisms, accountant="rdp", epsilon_tolerance=0.005))  # fmt: skip


def composed_epsilon(entries: list[dict[str, Any]], delta: float) -> float:
    """epsilon at `delta` of every ledger entry's Gaussian mechanisms composed (RDP, Opacus's accountant)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(float(e["noise_multiplier"]), 1.0, int(e["mechanisms"])) for e in entries]
    return float(accountant.get_epsilon(delta))


def bound_per_patient(patients: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row positions keeping at most k rows of each patient, drawn at random (no look at the values)."""
    kept = []
    for patient in dict.fromkeys(patients.tolist()):
        rows = np.flatnonzero(patients == patient)
        kept.append(rows if len(rows) <= k else rng.choice(rows, size=k, replace=False))
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)


def clip_tokens(latents: np.ndarray, norm: float) -> np.ndarray:
    """Every token vector scaled down to L2 norm <= `norm` (shape kept)."""
    lengths = np.linalg.norm(latents, axis=-1, keepdims=True)
    return latents * np.minimum(1.0, norm / np.maximum(lengths, 1e-12))


class DPMode(BufferMode):
    """Stores noisy cluster means, sds and sizes with an accounted (epsilon, delta) per stage (module docstring);
    replay samples from them; the attacker attacks the released means with the shared model, as for aggregate."""

    name: ClassVar[str] = "dp"
    stores_clusters: ClassVar[bool] = True
    releases_all_candidates: ClassVar[bool] = True

    @classmethod
    def check_knobs(cls, config: Any) -> None:
        def positive(name: str, value: Any, integer: bool = False, low: float = 0.0, open_low: bool = True) -> None:
            kind = (int,) if integer else (int, float)
            bad = isinstance(value, bool) or not isinstance(value, kind)
            if bad or (value <= low if open_low else value < low):
                what = "an integer" if integer else "a number"
                raise ValueError(f"replay.privacy.{name} must be {what} {'>' if open_low else '>='} {low}; "
                                 f"got {value!r}")  # fmt: skip

        positive("dp_epsilon", config.dp_epsilon)
        positive("dp_clip", config.dp_clip)
        positive("dp_max_slices_per_patient", config.dp_max_slices_per_patient, integer=True, low=1, open_low=False)
        positive("dp_clusters", config.dp_clusters, integer=True, low=1, open_low=False)
        positive("dp_iterations", config.dp_iterations, integer=True, low=0, open_low=False)
        delta = config.dp_delta
        if delta is not None and (isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1):
            raise ValueError(f"replay.privacy.dp_delta must be a number in (0, 1), or null for 0.1 / the stage's "
                             f"training slices; got {delta!r}")  # fmt: skip

    def release_warning(self, stage: str, accounting: dict[str, Any]) -> str | None:
        return mostly_noise_line(stage, accounting)

    def release(self, latents: np.ndarray, patients: np.ndarray, config: Any, seed: int) -> Released:
        n, tokens, channels = latents.shape
        rng = np.random.default_rng([seed, 17])
        keep = bound_per_patient(np.asarray(patients), config.dp_max_slices_per_patient, rng)
        per_token = config.dp_clip * math.sqrt(channels)
        x = clip_tokens(latents[keep].astype(np.float64), per_token).reshape(len(keep), -1)
        k_max, bound = config.dp_max_slices_per_patient, per_token * math.sqrt(tokens)
        clusters = config.dp_clusters
        iterations = config.dp_iterations if clusters > 1 else 0
        mechanisms = 2 * iterations + 3
        delta = config.dp_delta if config.dp_delta is not None else 0.1 / n
        sigma = noise_multiplier(config.dp_epsilon, delta, mechanisms)
        sd_sum, sd_count, sd_square = sigma * k_max * bound, sigma * k_max, sigma * k_max * bound**2

        centres = rng.standard_normal((clusters, x.shape[1])) * config.dp_clip  # data-independent start
        for _ in range(iterations):
            assign = _nearest(x, centres)
            sums = np.stack([x[assign == c].sum(axis=0) for c in range(clusters)])
            counts = np.bincount(assign, minlength=clusters).astype(np.float64)
            sums += rng.normal(0.0, sd_sum, sums.shape)
            counts += rng.normal(0.0, sd_count, counts.shape)
            moved = counts >= 1.0
            centres[moved] = sums[moved] / counts[moved, None]
        assign = _nearest(x, centres) if clusters > 1 else np.zeros(len(x), np.int64)
        sums = np.stack([x[assign == c].sum(axis=0) for c in range(clusters)]) + rng.normal(
            0.0, sd_sum, (clusters, x.shape[1])
        )
        squares = np.stack([(x[assign == c] ** 2).sum(axis=0) for c in range(clusters)]) + rng.normal(
            0.0, sd_square, (clusters, x.shape[1])
        )
        counts = np.bincount(assign, minlength=clusters) + rng.normal(0.0, sd_count, clusters)
        sizes = np.maximum(np.rint(counts), 1.0)
        means = sums / sizes[:, None]
        spread = np.sqrt(np.maximum(squares / sizes[:, None] - means**2, 0.0))
        shape = (clusters, tokens, channels)
        # for the audit's scoring only, never stored: a cluster's slices, or for one the noise left empty the slice
        # nearest its released mean (what an attacker reconstructing it would come closest to)
        nearest = _nearest(means, x) if len(x) else np.zeros(clusters, np.int64)
        members = [keep[assign == c] if (assign == c).any() else keep[[nearest[c]]] for c in range(clusters)]
        accounting = {
            "mode": "dp", "unit": "patient", "epsilon": round(composed_epsilon(
                [{"noise_multiplier": sigma, "mechanisms": mechanisms}], delta), 4),
            "target_epsilon": float(config.dp_epsilon), "delta": delta, "noise_multiplier": sigma,
            "mechanisms": mechanisms, "max_slices_per_patient": k_max, "clip_per_token": per_token,
            "clusters": clusters, "iterations": iterations, "patients": len(dict.fromkeys(patients.tolist())),
            "slices_used": len(keep), "accountant": ACCOUNTANT,
            "noise_to_clip": round(noise_to_clip(sd_sum, len(keep), clusters, config.dp_clip), 3),
        }  # fmt: skip
        return Released(means.reshape(shape).astype(np.float16), spread.reshape(shape).astype(np.float16),
                        sizes.astype(np.int32), members, accounting)  # fmt: skip


def noise_to_clip(sd_sum: float, slices_used: int, clusters: int, clip: float) -> float:
    """The noise sd on one coordinate of a released mean, in units of the per-coordinate bound `dp_clip`, for
    clusters of equal size: above 1 the means are mostly noise and replay carries little of the stage.

    It depends on the data only through the count of slices used (patients x at most k), which the ledger
    records anyway; the noise grows with sqrt(tokens x channels) and shrinks with the number of patients.
    """
    per_cluster = max(slices_used, 1) / max(clusters, 1)
    return float(sd_sum / per_cluster / clip)


def mostly_noise_line(stage: str, accounting: dict[str, Any]) -> str | None:
    """One note when a dp release is mostly noise (a small stage: few patients), else None.

    Not a failure: the release is as private as any, and replay still regularises the upper blocks (on the cpu
    benchmark, whose stages are 3-6x noise, dp prevented 84 % of finetune's forgetting); but what is replayed then says
    little about this stage's data, and the user should know why and what changes it.
    """
    ratio = accounting.get("noise_to_clip")
    if ratio is None or ratio <= 1.0:
        return None
    return (f"note: replay.privacy dp: buffer {stage}'s stored means are mostly noise ({accounting['patients']} "
            f"patients; noise sd {ratio:.1f} x dp_clip on each coordinate at epsilon {accounting['epsilon']:.2f}), so "
            "replay carries little of this stage's data; more patients per stage or a larger "
            "replay.privacy.dp_epsilon lower it (docs/privacy.md \"dp\")")  # fmt: skip


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = (x**2).sum(axis=1)[:, None] - 2.0 * x @ centres.T + (centres**2).sum(axis=1)[None, :]
    return np.argmin(distances, axis=1)
