"""Shape checks and pooling shared by the WKD losses and BKE.

Features arrive either as tokens (B, N, C) from the upper ViT blocks or already pooled (B, C). Both losses
and BKE must agree on what "a sample's vector" is, so pooling lives in one place: the token mean, which is
what the downstream linear probe also sees.
"""

from __future__ import annotations

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def as_compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision features: latents are stored in float16 and the student may run under autocast,
    but variances, softmaxes and OT costs lose too much in 16 bits."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def check_features(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (B, C) or (B, N, C), got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[-1] < 1 or (x.ndim == 3 and x.shape[1] < 1):
        raise ValueError(f"{name} has an empty dimension: {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")


def student_teacher(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a student/teacher pair and detach the teacher.

    Detaching here, not at the call site, is what guarantees that distillation can never move the frozen
    previous-stage model, whatever the caller forgot.
    """
    check_features(student, "student")
    check_features(teacher, "teacher")
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher shapes differ: {tuple(student.shape)} vs {tuple(teacher.shape)}")
    s = as_compute_dtype(student)
    t = as_compute_dtype(teacher.detach()).to(dtype=s.dtype, device=s.device)
    return s, t


def pool_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B, C) by the token mean; (B, C) passes through."""
    return x.mean(dim=1) if x.ndim == 3 else x
