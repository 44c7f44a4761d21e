"""Stage training: schedule, optimiser, atomic checkpoints and the resumable loop.

The names are imported on first use (cssl_core._lazy): `cssl_core.train.config` (TrainConfig) needs no torch
and validates params.yaml before every stage command, training or not.
"""

from cssl_core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cssl_core.train.checkpoint": ("load_latest", "save_checkpoint"),
        "cssl_core.train.config": ("TrainConfig",),
        "cssl_core.train.loop": ("CheckpointMismatch", "TrainResult", "train_stage", "training_fingerprint"),
        "cssl_core.train.optim": ("build_optimizer",),
        "cssl_core.train.schedule": ("WarmupCosine", "warmup_cosine"),
        "cssl_core.train.validation": ("validation_loss",),
    },
)
