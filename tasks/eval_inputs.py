"""Stage `eval-inputs`: data/eval/inputs.json, the manifest of the windowed data evaluation reads.

evaluate-init and evaluate@<stage> depend on this manifest rather than on all of data/windowed, so adding,
re-windowing or re-screening a cohort that no stage and no eval task uses re-runs this stage (hashing) and
nothing after it (cssl_core/evaluation/inputs.py says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.evaluation.inputs import evaluation_inputs, input_manifest
from cssl_core.layout import EVAL


def manifest_path() -> Path:
    return EVAL / "inputs.json"


def run_eval_inputs(config: ProjectConfig) -> dict[str, Any]:
    """Hash the folders evaluation reads into data/eval/inputs.json (atomically: never half-written)."""
    manifest = input_manifest(evaluation_inputs(config))
    EVAL.mkdir(parents=True, exist_ok=True)
    write_json(manifest_path(), manifest)
    return manifest
