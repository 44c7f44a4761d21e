"""Wasserstein knowledge distillation (WKD) between student and teacher features.

The student (current upper blocks) and the teacher (previous stage's upper blocks, frozen) see the same
replayed latents. Matching them point by point (MSE) pins every channel of every token; matching them as
*distributions* lets the student move individual features as long as the feature distribution of the old
data is preserved, which is the stability/plasticity trade-off WKD is for (Lv et al., NeurIPS 2024;
Tasai et al., arXiv 2510.27213).

Every mode returns a squared 2-Wasserstein quantity in the units of the squared Euclidean cost over
channels, so that ``lambda_wkd`` does not change meaning by a factor C when the mode changes, with one
documented exception (``sliced``, see there). The teacher is always detached inside the loss, and
half-precision inputs are computed in float32 and the loss is returned in float32.

Modes are registered in ``WKD_MODES``; ``wkd_loss`` dispatches on the name used in params.yaml and rejects
unknown modes and options instead of silently ignoring a typo in a config.

POT is imported inside the two modes that use it (``ot``, ``sliced``): `import ot` costs about 3 s of CPU, and
every stage that imports the strategies (pretrain, export, audit) paid it for the default ``gaussian`` mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from cssl_core.distill._features import pool_tokens, student_teacher

OVER_CHOICES = ("samples", "tokens")
OT_SOLVERS = ("emd", "sinkhorn")


def wkd_gaussian(student: torch.Tensor, teacher: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Closed-form W2^2 between diagonal Gaussians fitted to the features.

    (B, N, C): one Gaussian per sample, mean and (population) standard deviation of each channel over the
    tokens. (B, C): a single Gaussian per side, over the batch, per channel.

    loss = ||mu_s - mu_t||^2 + ||sigma_s - sigma_t||^2, *summed over channels* and averaged over samples.
    Summing over channels makes the value the exact W2^2 between the two diagonal Gaussians (what POT's
    Bures-Wasserstein distance gives, squared), in the same units as the ``ot`` mode, whose cost is also a
    squared Euclidean distance summed over channels; a per-channel mean would make it C times smaller.

    sigma = sqrt(var + eps): without eps the gradient of sqrt is infinite for a constant channel (and for
    N = 1), which does happen with dead or saturated units; eps >= 0 shifts both sides alike.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    s, t = student_teacher(student, teacher)
    if s.ndim == 2:
        s, t = s.unsqueeze(0), t.unsqueeze(0)
    mu_s, sigma_s = _mean_std(s, eps)
    mu_t, sigma_t = _mean_std(t, eps)
    per_sample = (mu_s - mu_t).square().sum(dim=-1) + (sigma_s - sigma_t).square().sum(dim=-1)
    return per_sample.mean()


def _mean_std(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    # Two-pass centred variance over dim 1. Not torch.var_mean: on CPU its reduction over a middle dimension
    # (forward+backward) measured 2-5x slower than this; not E[x^2] - mu^2: that cancels badly when |mu| >> sigma.
    mu = x.mean(dim=1)
    var = (x - mu.unsqueeze(1)).square().mean(dim=1)
    return mu, torch.sqrt(var + eps)


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def _ot_value(
    s: torch.Tensor, t: torch.Tensor, solver: str, reg: float, max_iter: int, stop_thr: float
) -> torch.Tensor:
    """W2^2 between two uniform point clouds (n, C) and (m, C).

    Gradients reach the student only through the cost matrix: emd2 returns the optimal plan as the
    gradient of <P, M> w.r.t. M (the plan is held constant, envelope theorem); sinkhorn2 on torch tensors
    is differentiated by autograd through its iterations.
    """
    import ot

    cost = ot.dist(s, t, metric="sqeuclidean")
    a, b = _uniform(s.shape[0], cost), _uniform(t.shape[0], cost)
    if solver == "emd":
        return ot.emd2(a, b, cost, numItermax=max_iter)
    # log-domain iterations: the cost is in raw feature units (often >> reg), where plain Sinkhorn underflows
    return ot.sinkhorn2(a, b, cost, reg, method="sinkhorn_log", numItermax=max_iter, stopThr=stop_thr)


def wkd_ot(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    solver: str = "emd",
    reg: float = 0.05,
    over: str = "samples",
    max_iter: int | None = None,
    stop_thr: float = 1e-6,
) -> torch.Tensor:
    """Optimal transport between the student and teacher feature *sets*, squared-Euclidean cost.

    over="samples" (default): the batch is one point cloud per side, each sample one point (token mean when
    tokens are given). The batch distribution of the old data is what must not drift; which sample maps
    where is left to the transport plan. One B x B problem: exact ``emd2`` is cheap for B <= a few hundred.

    over="tokens": one N x N problem per sample between its student and teacher tokens, averaged over the
    batch. This is a python loop over samples (POT solves one problem at a time) and costs B times more;
    it is there for ablations, not the default.

    solver="emd": exact W2^2 (``ot.emd2``), the default: for a batch-sized problem it is cheap and has no
    bias. solver="sinkhorn": entropic ``ot.sinkhorn2`` (log-domain iterations, stable for small ``reg``).
    ``reg`` is absolute, in the units of the cost matrix (squared feature distances), and the entropic bias
    grows with reg relative to the spread of those distances: on synthetic pooled B = 64, C = 192 features with exact
    W2^2 = 0.12, reg = 1 gave 2.25 and reg = 0.1 gave the exact value. The returned value is the transport
    cost <P, M> without the entropy term, as ``ot.sinkhorn2`` returns it. ``stop_thr`` is Sinkhorn's
    tolerance on the marginal violation: POT's default 1e-9 is rarely met in float32, so every step would
    run to ``max_iter`` (measured: 1000 iterations instead of 10 for the case above at reg = 1).
    ``max_iter`` defaults to POT's own defaults (100000 for emd, 1000 for sinkhorn).
    """
    if solver not in OT_SOLVERS:
        raise ValueError(f"unknown OT solver {solver!r}; choose one of {', '.join(OT_SOLVERS)}")
    if over not in OVER_CHOICES:
        raise ValueError(f"over must be one of {', '.join(OVER_CHOICES)}, got {over!r}")
    if solver == "sinkhorn" and not reg > 0:
        raise ValueError(f"reg must be > 0 for the sinkhorn solver, got {reg}")
    if max_iter is None:
        max_iter = 100000 if solver == "emd" else 1000
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not stop_thr > 0:
        raise ValueError(f"stop_thr must be > 0, got {stop_thr}")
    s, t = student_teacher(student, teacher)
    if over == "samples":
        return _ot_value(pool_tokens(s), pool_tokens(t), solver, reg, max_iter, stop_thr)
    if s.ndim != 3:
        raise ValueError(f"over='tokens' needs (B, N, C) features, got {tuple(s.shape)}")
    values = [_ot_value(s[i], t[i], solver, reg, max_iter, stop_thr) for i in range(s.shape[0])]
    return torch.stack(values).mean()


@lru_cache(maxsize=32)
def _numpy_projections(dim: int, n_projections: int, seed: int) -> np.ndarray:
    # Same draw as POT's numpy backend with an integer seed (RandomState(seed).randn(d, n), unit columns).
    proj = np.random.RandomState(seed).randn(dim, n_projections)
    return proj / np.sqrt(np.sum(proj**2, axis=0, keepdims=True))


def sliced_projections(
    dim: int, n_projections: int, seed: int, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Unit projection directions (dim, n_projections), drawn in numpy from ``seed``.

    Drawing in numpy rather than with a torch generator makes the directions, hence the loss, identical on
    CPU and GPU and identical to POT's numpy ``sliced_wasserstein_distance(..., seed=seed)``; caching avoids
    redrawing them every training step.
    """
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    return torch.as_tensor(_numpy_projections(dim, n_projections, seed), dtype=dtype, device=device)


def wkd_sliced(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    n_projections: int = 64,
    seed: int = 0,
    over: str = "samples",
) -> torch.Tensor:
    """Sliced Wasserstein: the mean over random unit directions of the 1-D W2^2 of the projected sets.

    Returns SW2^2, i.e. the square of POT's ``sliced_wasserstein_distance(..., p=2)``. The square, computed
    directly from POT's ``wasserstein_1d`` rather than by squaring POT's root, keeps the gradient finite when
    student == teacher, which is exactly the first continual step (the student starts as a copy of the
    teacher); d sqrt(x)/dx is infinite at 0 and would give NaN gradients there.

    Scale: a random unit direction carries ~1/C of a squared distance, so SW2^2 is ~W2^2 / C, smaller than
    the ``gaussian`` and ``ot`` modes by about C; tune ``lambda_wkd`` accordingly.

    over="samples": one point cloud of pooled sample vectors per side (as in ``wkd_ot``). over="tokens":
    per-sample token clouds, all samples and directions solved at once (vectorised, no loop), averaged; the
    same value as POT's function per sample (tested).
    """
    if over not in OVER_CHOICES:
        raise ValueError(f"over must be one of {', '.join(OVER_CHOICES)}, got {over!r}")
    s, t = student_teacher(student, teacher)
    proj = sliced_projections(s.shape[-1], n_projections, seed, dtype=s.dtype, device=s.device)
    if over == "samples":
        import ot

        ps, pt = pool_tokens(s) @ proj, pool_tokens(t) @ proj  # (B, P)
        return ot.lp.wasserstein_1d(ps, pt, p=2).mean()
    if s.ndim != 3:
        raise ValueError(f"over='tokens' needs (B, N, C) features, got {tuple(s.shape)}")
    # Student and teacher token sets have equal size and uniform weights, so each 1-D OT is the matching of
    # sorted values, which is what wasserstein_1d computes in general; sorting directly skips its quantile
    # search (measured 5x faster for B = 64, N = 144, 64 directions) and is vectorised over (sample, direction).
    ps = (s @ proj).sort(dim=1).values  # (B, N, P)
    pt = (t @ proj).sort(dim=1).values
    return (ps - pt).square().mean(dim=1).mean()


WkdFn = Callable[..., torch.Tensor]
WKD_MODES: dict[str, WkdFn] = {"gaussian": wkd_gaussian, "ot": wkd_ot, "sliced": wkd_sliced}


def wkd_options(mode: str) -> dict[str, object]:
    """The options a mode accepts, with their defaults (for config validation and docs)."""
    fn = _mode(mode)
    return {name: p.default for name, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}


def _mode(mode: str) -> WkdFn:
    if mode not in WKD_MODES:
        raise ValueError(f"unknown WKD mode {mode!r}; known modes: {', '.join(sorted(WKD_MODES))}")
    return WKD_MODES[mode]


def wkd_loss(student: torch.Tensor, teacher: torch.Tensor, mode: str = "gaussian", **options: object) -> torch.Tensor:
    """Dispatch to a WKD mode by name; unknown modes and options raise ValueError naming what is allowed.

    ValueError rather than TypeError for options because they come from params.yaml, and a misspelt option
    there is a configuration error the user must see, not a silently applied default.
    """
    fn = _mode(mode)
    allowed = wkd_options(mode)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for WKD mode {mode!r}; it accepts: {known}")
    return fn(student, teacher, **options)
