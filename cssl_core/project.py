"""Where the project is: the folder that owns the site secret and the MLflow store.

A project is the working directory or the nearest folder above it holding `dvc.yaml` or `.dvc/` (what
`dvc init` and this repository have). Its secret and store are found from any sub-folder; outside every
project, a command must not quietly start a second secret or store in whatever folder it was run from:
the same patient would get other keys there and the runs would be scattered.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_MARKERS = ("dvc.yaml", ".dvc")


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder from `start` (default: the working directory) upwards that is a project, or None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def not_a_project_text(where: Path | None = None) -> str:
    """The first half of every message about running outside a project."""
    return f"{(where or Path.cwd()).resolve()} is not inside a project (no dvc.yaml or .dvc/ there or above)"
