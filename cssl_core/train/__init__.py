"""Stage training: schedule, optimiser, atomic checkpoints and the resumable loop."""

from cssl_core.train.checkpoint import load_latest, save_checkpoint
from cssl_core.train.config import TrainConfig
from cssl_core.train.evaluate import mae_eval_loss
from cssl_core.train.loop import CheckpointMismatch, TrainResult, train_stage, training_fingerprint
from cssl_core.train.optim import build_optimizer
from cssl_core.train.schedule import WarmupCosine, warmup_cosine

__all__ = [
    "CheckpointMismatch",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "build_optimizer",
    "load_latest",
    "mae_eval_loss",
    "save_checkpoint",
    "train_stage",
    "training_fingerprint",
    "warmup_cosine",
]
