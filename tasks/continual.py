"""Where each continual stage's inputs and outputs live, derived from params.yaml's `continual.stages`.

One place computes these paths so the stage scripts and dvc.yaml agree; dvc.yaml spells the same
layout with `${item.prev}` and friends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

INIT = "init"
DATA = Path("data")


@dataclass(frozen=True)
class StagePaths:
    name: str
    prev: str
    cohort: str
    window: str
    index: int  # 0 for the first continual stage

    @property
    def windowed(self) -> Path:
        return DATA / "windowed" / f"{self.cohort}-{self.window}"

    @property
    def model(self) -> Path:
        return DATA / "models" / self.name

    @property
    def prev_model(self) -> Path:
        return DATA / "models" / self.prev

    @property
    def buffer(self) -> Path:
        return DATA / "buffers" / self.name

    @property
    def prev_buffer(self) -> Path:
        return DATA / "buffers" / self.prev

    @property
    def checkpoints(self) -> Path:
        return DATA / "checkpoints" / self.name

    def metrics(self, kind: str, suffix: str = ".json") -> Path:
        return DATA / "metrics" / f"{kind}-{self.name}{suffix}"


def stage_paths(params: dict[str, Any], name: str) -> StagePaths:
    stages = params.get("continual", {}).get("stages", {})
    if name not in stages:
        raise KeyError(f"no continual stage {name!r} in params.yaml continual.stages (known: {', '.join(stages)})")
    block = stages[name]
    missing = [k for k in ("prev", "cohort", "window") if k not in block]
    if missing:
        raise KeyError(f"continual.stages.{name} lacks {missing}; each stage needs prev, cohort and window")
    index, prev = 0, block["prev"]
    seen = {name}
    while prev != INIT:
        if prev not in stages or prev in seen:
            raise ValueError(f"continual.stages.{name}: prev chain reaches {prev!r}, which is not a stage or loops")
        seen.add(prev)
        index += 1
        prev = stages[prev]["prev"]
    return StagePaths(
        name=name, prev=str(block["prev"]), cohort=str(block["cohort"]), window=str(block["window"]), index=index
    )


MODEL_FILE = "model.pt"
CONFIG_FILE = "model.json"


def save_model(directory: Path, model: torch.nn.Module, description: dict[str, Any]) -> None:
    """The whole MAE (encoder and decoder: each stage's decoder is kept for label-free forgetting)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / MODEL_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")


def load_model(directory: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    from cssl_core.models import MAEConfig, build_mae

    path = directory / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; run the stage that writes this model first")
    description = json.loads(path.read_text())
    model = build_mae(MAEConfig.from_dict(description["model_config"]))
    model.load_state_dict(torch.load(directory / MODEL_FILE, map_location=device, weights_only=True))
    return model, description
