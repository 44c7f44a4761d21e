"""Evaluation of the continual SSL encoders: label-free forgetting (held-out reconstruction with an earlier
stage's decoder, CKA drift), downstream probes on frozen features, patient-grouped splits, and the
continual-learning summaries (average, BWT, FWT, mean +- sd over seeds) of the resulting R[i][j] matrices.

Pure numpy / torch / scikit-learn: orchestration, tracking and data validation live elsewhere.
"""

from cssl_core.evaluation.continual import (
    average_final,
    backward_transfer,
    backward_transfer_per_task,
    forgetting_since_trained,
    forgetting_since_trained_per_task,
    forward_transfer,
    forward_transfer_per_task,
    mean_sd,
)
from cssl_core.evaluation.features import as_images, extract_tokens, pixel_features, pooled
from cssl_core.evaluation.forgetting import linear_cka, reconstruction_loss
from cssl_core.evaluation.probes import (
    AttentivePooler,
    attentive_probe,
    binary_metrics,
    linear_probe,
    token_labels_from_masks,
    token_probe,
)
from cssl_core.evaluation.progress import Progress
from cssl_core.evaluation.splits import few_shot, patient_folds

__all__ = [
    "AttentivePooler",
    "Progress",
    "as_images",
    "attentive_probe",
    "average_final",
    "backward_transfer",
    "backward_transfer_per_task",
    "binary_metrics",
    "extract_tokens",
    "few_shot",
    "forgetting_since_trained",
    "forgetting_since_trained_per_task",
    "forward_transfer",
    "forward_transfer_per_task",
    "linear_cka",
    "linear_probe",
    "mean_sd",
    "patient_folds",
    "pixel_features",
    "pooled",
    "reconstruction_loss",
    "token_labels_from_masks",
    "token_probe",
]
