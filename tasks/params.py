"""Reading params.yaml, the single file of knobs that dvc.yaml points every stage at."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: params file not found; run from the project root or pass --params")
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def section(params: Mapping[str, Any], *keys: str) -> Any:
    """params[k1][k2]... with an error that names the missing key path."""
    node: Any = params
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            missing = ".".join(keys[: depth + 1])
            raise KeyError(f"params.yaml has no '{missing}'; see the shipped params.yaml for the expected layout")
        node = node[key]
    return node
