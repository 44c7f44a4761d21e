"""Reading params.yaml, the single file of knobs that dvc.yaml points every stage at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The raw params.yaml mapping (an empty file is `{}`), read by every `cssl` command before it does any work.

    A missing file is one clear line rather than yaml's traceback: stage commands are run from the project
    root by DVC, and a person running one by hand from elsewhere needs to be told where to stand.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: params file not found; run from the project root or pass --params")
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}
