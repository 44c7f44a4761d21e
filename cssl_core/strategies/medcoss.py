"""MedCoSS (Ye et al., arXiv 2311.17597) on CT windows: a k-means raw buffer, mixup within a window, and
feature distillation from the previous stage on the mixed slices.

Mixing only within a window matters: a lung/mediastinal blend is an image of no window at all, and
distilling on it would spend the buffer on a domain no stage ever trains on. Mixup widens what a small
buffer covers (every pair spans a segment of its window's image space). There is deliberately no pretext
loss on the buffer: old knowledge is kept by the teacher's features, not by re-fitting old pixels. Keeps
raw images: not private.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cssl_core.strategies.options import STRATEGY_OPTIONS, check_medcoss_options
from cssl_core.strategies.replay_sampling import ReplayStrategy

OPTIONS = STRATEGY_OPTIONS["medcoss"]


def intra_window_partners(windows: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
    """partner[i]: another batch position with the same window as i (i itself only if alone in its window).

    Within each window group, a random permutation is read as a cycle, so every member is paired with a
    different member and each member is used as a partner exactly once.
    """
    windows = np.asarray(windows)
    partner = torch.arange(len(windows))
    for name in np.unique(windows):  # sorted: a fixed order of generator draws
        group = torch.from_numpy(np.flatnonzero(windows == name))
        if len(group) < 2:
            continue
        cycle = group[torch.randperm(len(group), generator=generator)]
        partner[cycle] = torch.roll(cycle, -1)
    return partner


def intra_window_mixup(
    images: torch.Tensor, windows: np.ndarray, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mixed images, partner indices, lambdas): x~_i = lam_i x_i + (1 - lam_i) x_partner(i), lam ~ U(0, 1)."""
    partner = intra_window_partners(windows, generator)
    lam = torch.rand(images.shape[0], generator=generator)
    weight = lam.to(images.device, images.dtype).view(-1, *([1] * (images.ndim - 1)))
    mixed = weight * images + (1.0 - weight) * images[partner.to(images.device)]
    return mixed, partner, lam


class MedCoSSStrategy(ReplayStrategy):
    name: ClassVar[str] = "medcoss"
    keeps_raw_images: ClassVar[bool] = True
    buffer_kind: ClassVar[str] = OPTIONS.buffer_kind
    buffer_selection: ClassVar[str | None] = OPTIONS.buffer_selection
    needs_teacher: ClassVar[bool] = True
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults
    replay_terms: ClassVar[tuple[str, ...]] = ("distill",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_medcoss_options(self.options)

    def with_replay(self, mae: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        ctx = self.context
        images = self.replay_images(indices)
        mixed, _, _ = intra_window_mixup(images, self.buffer.window[indices.numpy()], ctx.generator)
        with torch.no_grad():
            target = ctx.teacher.encode(mixed).float()
        distill = F.mse_loss(ctx.model.encode(mixed).float(), target)
        return {"mae": mae, "distill": distill, "total": mae + self.options["lambda_distill"] * distill}
