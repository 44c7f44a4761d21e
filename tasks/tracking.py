"""MLflow bookkeeping shared by every stage.

Each DVC stage is one MLflow run. When the pipeline is driven by `cssl repro` or the Prefect flow, the
driver opens a parent run and passes its id in `CSSL_MLFLOW_PARENT_RUN_ID`; stage runs nest under it so
one pipeline execution reads as one row with children in `mlflow ui`. A stage run by hand (`dvc repro`
alone) is a top-level run. The store defaults to `sqlite:///mlflow.db` in the project root.

Only figures and parameters go in: never a path under data/raw, a header value or an exception text
from a DICOM reader, so that nothing identifying can land in the tracking store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

PARENT_RUN_ENV = "CSSL_MLFLOW_PARENT_RUN_ID"
EXPERIMENT_ENV = "CSSL_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "cssl-pipeline"


def tracking_uri(project_root: Path | None = None) -> str:
    """The MLflow store: `MLFLOW_TRACKING_URI` if set, else SQLite in the project root."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = (project_root or Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def configure(project_root: Path | None = None):
    """Point MLflow at the project store and experiment; returns the imported module."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    import mlflow

    # store migrations and the like log at INFO on stderr; stage output should be the stage's own lines
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    mlflow.set_tracking_uri(tracking_uri(project_root))
    name = os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)
    if mlflow.get_experiment_by_name(name) is None:
        root = (project_root or Path.cwd()).resolve()
        mlflow.create_experiment(name, artifact_location=(root / "mlartifacts" / name).as_uri())
    mlflow.set_experiment(name)
    return mlflow


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params -> dotted keys, as MLflow shows them."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def stage_run(
    stage: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[Any]:
    """Open the MLflow run of one stage, nested under the pipeline's parent run when there is one."""
    mlflow = configure()
    parent = os.environ.get(PARENT_RUN_ENV)
    run_tags = {"cssl.stage": stage, "cssl.stage_kind": stage.split("@")[0]}
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    run_tags.update(tags or {})
    with mlflow.start_run(run_name=stage, tags=run_tags) as run:
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
        yield run


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def pipeline_tags(project_root: Path) -> dict[str, str]:
    """Tags of a pipeline's parent run: strategy and seed, so `mlflow ui` can compare executions."""
    import yaml

    path = project_root / "params.yaml"
    params = yaml.safe_load(path.read_text()) if path.exists() else {}
    ssl = (params or {}).get("ssl", {})
    tags = {"cssl.strategy": str(ssl.get("strategy", "")), "cssl.seed": str(ssl.get("train", {}).get("seed", ""))}
    stages = (params or {}).get("continual", {}).get("stages", {})
    tags["cssl.stages"] = ",".join(stages)
    return tags
