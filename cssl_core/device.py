"""Which torch device code runs on: the one place that turns a params.yaml name into a device.

Training, evaluation and probe feature extraction all accept a device name ("auto", "cpu", "cuda:1") or
a device; resolving it in one function keeps "auto" meaning the same thing in every stage, so a run never
trains on the GPU and evaluates on the CPU because two copies of the rule disagreed.
"""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(name: str | torch.device) -> torch.device:
    """The device for `name`: CUDA when "auto" and a GPU is there, else CPU; any other name (or a device) as
    torch reads it, so a typo fails here with torch's own message rather than at the first tensor move."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_of(model: nn.Module) -> torch.device:
    """Where `model`'s parameters live (CPU for a model without parameters): inputs are moved there, so a
    caller never has to pass the device the model was already put on."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
