"""Privacy attacks on replay buffers: how much of the victims' slices, findings and membership a buffer gives away.

Threat model (docs/privacy.md): the attacker holds the buffer, the shared stage models (the lower encoder) and CT
of the same kind from other patients, never the victims' slices. One module per attack (ridge, decoder,
gradient, findings, linkage), the mean-slice baseline, scoring (the only code that sees the true slices), a
figure helper, and `audit` that runs them all with bounded budgets and a seed.
"""

from cssl_core.privacy.audit import AuditConfig, AuditResult, audit_buffer, run_audit
from cssl_core.privacy.baseline import mean_slice, predict_mean
from cssl_core.privacy.decoder import InversionDecoder, TrainedDecoder, train_decoder
from cssl_core.privacy.figure import draw_reconstructions
from cssl_core.privacy.findings import FindingClassifier, finding_auc
from cssl_core.privacy.gradient import GradientResult, gradient_invert
from cssl_core.privacy.linkage import latent_linkage_scores, nearest_similarity, pixel_linkage_scores, reid_auc
from cssl_core.privacy.ridge import TokenRidge, fit_ridge
from cssl_core.privacy.scoring import score, summarise

__all__ = [
    "AuditConfig",
    "AuditResult",
    "FindingClassifier",
    "GradientResult",
    "InversionDecoder",
    "TokenRidge",
    "TrainedDecoder",
    "audit_buffer",
    "draw_reconstructions",
    "finding_auc",
    "fit_ridge",
    "gradient_invert",
    "latent_linkage_scores",
    "mean_slice",
    "nearest_similarity",
    "pixel_linkage_scores",
    "predict_mean",
    "reid_auc",
    "run_audit",
    "score",
    "summarise",
    "train_decoder",
]
