"""AdamW with the usual ViT exclusions from weight decay.

Decaying norms, biases, positional embeddings or the mask token pulls them towards zero for no
regularisation benefit (they scale or shift, they do not fit noise), which is why MAE, timm and solo-learn
all exclude them. Frozen parameters (the lower encoder after stage 1) are left out entirely.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.optim import AdamW

_NO_DECAY_NAMES = ("pos_embed", "position_embeddings", "mask_token", "cls_token")


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or any(part in name for part in _NO_DECAY_NAMES)


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if no_weight_decay(name, param) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("nothing to optimise: every parameter is frozen")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    modules: nn.Module | Iterable[nn.Module],
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.95),
) -> AdamW:
    """AdamW over the trainable parameters of `modules` (the model, plus any strategy-owned heads)."""
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    return AdamW(param_groups(modules, weight_decay), lr=lr, betas=betas)
