"""The windowed data evaluation reads, as a manifest that evaluate@<stage> depends on instead of data/windowed.

Why: DVC can list a stage's deps only as fixed paths, and the windowed folders the evaluation reads (each
`eval.tasks` entry's cohort x window, and every continual stage's for the label-free columns) are chosen in
params.yaml. Depending on all of data/windowed re-ran every evaluation (minutes) when a cohort that no stage
and no task uses was added. The manifest names exactly the folders read and the sha256 of each of their
files, so it changes exactly when what evaluation reads changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cssl_core.config import ProjectConfig
from cssl_core.layout import windowed_dir
from cssl_core.train.digests import digest_file


def evaluation_inputs(config: ProjectConfig) -> dict[str, Path]:
    """{name: windowed folder} of everything evaluate@<any stage> reads: `task:<name>` and `stage:<name>`."""
    inputs = {f"task:{name}": windowed_dir(task.cohort, task.window) for name, task in config.eval.tasks.items()}
    for name in config.continual.stages:
        paths = config.continual.paths(name)
        inputs[f"stage:{name}"] = paths.windowed
    return dict(sorted(inputs.items()))


def input_manifest(inputs: dict[str, Path]) -> dict[str, Any]:
    """{name: {"folder": path, "files": {file: sha256}}}; a missing folder is an error naming the key to fix."""
    manifest = {}
    for name, folder in inputs.items():
        if not folder.is_dir():
            kind, key = name.split(":", 1)
            where = f"eval.tasks.{key}" if kind == "task" else f"continual.stages.{key}"
            raise FileNotFoundError(f"{folder}: missing, but {where} reads it; its cohort must be in ingest.cohorts "
                                    "and its window in window.apply")  # fmt: skip
        files = {p.name: digest_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
        manifest[name] = {"folder": str(folder), "files": files}
    return manifest
