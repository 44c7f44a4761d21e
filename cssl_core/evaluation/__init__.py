"""Evaluation of the continual SSL encoders: label-free forgetting (held-out reconstruction with an earlier
stage's decoder, CKA drift), downstream probes (by name: registry.PROBES; frozen features, or end-to-end
fine-tuning of a copy of the encoder for a fixed budget), patient-grouped splits, and the continual-learning
summaries (average, BWT, FWT, mean +- sd over seeds) of the resulting R[i][j] matrices.

Pure numpy / torch / scikit-learn: orchestration, tracking and data validation live elsewhere. The names are
imported on first use (cssl_core._lazy): `cssl_core.evaluation.probe_names` needs no torch and validates
params.yaml's eval.probes before every stage command.
"""

from cssl_core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cssl_core.evaluation.continual": (
            "average_final",
            "backward_transfer",
            "backward_transfer_per_task",
            "forgetting_since_trained",
            "forgetting_since_trained_per_task",
            "forward_transfer",
            "forward_transfer_per_task",
            "mean_sd",
        ),
        "cssl_core.evaluation.finetuning_probe": ("FinetuneClassifier", "finetune_probe"),
        "cssl_core.evaluation.features": ("as_images", "extract_tokens", "pixel_features", "pooled"),
        "cssl_core.evaluation.forgetting": ("linear_cka", "reconstruction_loss"),
        "cssl_core.evaluation.probe_names": ("PROBE_NAMES", "REFERENCE_PROBE", "FinetuneBudget"),
        "cssl_core.evaluation.probes": (
            "AttentivePooler",
            "attentive_probe",
            "KNN_K",
            "binary_metrics",
            "knn_probe",
            "linear_probe",
            "token_labels_from_masks",
            "token_probe",
        ),
        "cssl_core.evaluation.progress": ("Progress",),
        "cssl_core.evaluation.registry": ("PROBES", "Probe", "ProbeData", "get_probe", "needed_inputs"),
        "cssl_core.evaluation.splits": ("few_shot", "patient_folds"),
    },
)
