"""Privacy attacks on replay buffers: how much of the victims' slices, findings and membership a buffer gives away.

Threat model (docs/privacy.md): the attacker holds the buffer, the shared stage models (the lower encoder) and CT
of the same kind from other patients, never the victims' slices. One module per attack (ridge, decoder,
gradient, findings, linkage), the mean-slice baseline, the victims' data (victims: the only code that reads
the true slices) and scoring (compares them with what an attack got back), a figure helper, `audit` that runs
them all with bounded budgets and a seed, and `gate` that decides on its figures whether the buffer may be
shared (privacy.gate).

The names are imported on first use (cssl_core._lazy): AuditConfig (cssl_core.privacy.settings) needs no torch
and validates params.yaml before every stage command, auditing or not.
"""

from cssl_core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cssl_core.privacy.settings": ("AuditConfig",),
        "cssl_core.privacy.audit": ("AuditResult", "audit_buffer", "run_audit"),
        "cssl_core.privacy.baseline": ("mean_slice", "predict_mean"),
        "cssl_core.privacy.decoder": ("InversionDecoder", "TrainedDecoder", "train_decoder"),
        "cssl_core.privacy.figure": ("draw_reconstructions",),
        "cssl_core.privacy.findings": ("FindingClassifier", "finding_auc"),
        "cssl_core.privacy.gate": ("PrivacyGateError", "strongest_ssim"),
        "cssl_core.privacy.gradient": ("GradientResult", "gradient_invert"),
        "cssl_core.privacy.linkage": (
            "latent_linkage_scores",
            "nearest_similarity",
            "pixel_linkage_scores",
            "reid_auc",
        ),
        "cssl_core.privacy.ridge": ("TokenRidge", "fit_ridge"),
        "cssl_core.privacy.scoring": ("score", "summarise"),
    },
)
