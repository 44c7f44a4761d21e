"""Distillation for latent replay: Wasserstein knowledge distillation (WKD) and batch knowledge ensemble (BKE).

Pure torch + POT. In a continual stage: ``wkd_loss(S, bke(T), mode)`` with S the student's and T the frozen
teacher's upper-block features on the same replayed latents.
"""

from cssl_core.distill.bke import batch_affinity, bke, bke_power_series, bke_propagator
from cssl_core.distill.wkd import (
    WKD_MODES,
    sliced_projections,
    wkd_gaussian,
    wkd_loss,
    wkd_options,
    wkd_ot,
    wkd_sliced,
)

__all__ = [
    "WKD_MODES",
    "batch_affinity",
    "bke",
    "bke_power_series",
    "bke_propagator",
    "sliced_projections",
    "wkd_gaussian",
    "wkd_loss",
    "wkd_options",
    "wkd_ot",
    "wkd_sliced",
]
