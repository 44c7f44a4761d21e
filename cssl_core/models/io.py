"""A stage's model directory on disk: the MAE's weights and the description that rebuilds it.

The description (`model.json`) holds the MAEConfig, so a reader builds the right architecture before loading
the weights (`model.pt`, a plain state dict loaded with weights_only: no pickled code runs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cssl_core.atomic_io import write_json

MODEL_FILE = "model.pt"
CONFIG_FILE = "model.json"


def save_model(directory: Path, model: torch.nn.Module, description: dict[str, Any]) -> None:
    """The whole MAE (encoder and decoder: each stage's decoder is kept for label-free forgetting)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / MODEL_FILE)
    write_json(directory / CONFIG_FILE, description)


def load_model(directory: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The MAE saved by `save_model` and its description; the description's model_config sets the architecture."""
    from cssl_core.models import MAEConfig, build_mae

    path = directory / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; run the stage that writes this model first")
    description = json.loads(path.read_text())
    model = build_mae(MAEConfig.from_dict(description["model_config"]))
    model.load_state_dict(torch.load(directory / MODEL_FILE, map_location=device, weights_only=True))
    return model, description


def encoder_digest(model) -> str:
    """sha256 of the weights (name, dtype, shape, bytes of every tensor) and the config: the identity of what
    gets registered, so re-running `report` on the same encoder finds its version instead of piling up copies."""
    import hashlib

    import torch

    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
