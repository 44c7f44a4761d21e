"""Optimisation knobs of one training stage, validated when params are parsed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cssl_core.known_keys import reject_unknown_keys

# Fields that may change between a crash and its resume without changing what the run computes.
# (keep_checkpoints bounds disk use across configurations; it never changes a run.)
VOLATILE_FIELDS = frozenset({"device", "keep_epoch_checkpoints", "keep_checkpoints"})


@dataclass(frozen=True)
class TrainConfig:
    """One stage's optimisation. `warmup_epochs` may be fractional; the schedule itself runs per step."""

    epochs: int
    lr: float = 5e-4
    final_lr_ratio: float = 0.0
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 0.0  # max global grad norm; 0 disables clipping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA; CPU always runs fp32
    deterministic: bool = True
    keep_epoch_checkpoints: bool = False
    keep_checkpoints: int = 3  # checkpoint directories (one per configuration) kept per stage, most recent first

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ValueError(f"final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("warmup_epochs, weight_decay and grad_clip must be >= 0")
        keep = self.keep_checkpoints
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep_checkpoints must be an int >= 1 (the running configuration counts), got {keep!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["betas"] = list(self.betas)
        return values

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed by this config."""
        return {k: v for k, v in self.to_dict().items() if k not in VOLATILE_FIELDS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        reject_unknown_keys(values, cls, "unknown training config key(s)")
        return cls(**values)
