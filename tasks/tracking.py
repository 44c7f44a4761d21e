"""MLflow bookkeeping shared by every stage.

Each DVC stage is one MLflow run. When the pipeline is driven by `cssl repro` or the Prefect flow, the
driver opens a parent run and passes its id in `CSSL_MLFLOW_PARENT_RUN_ID`; stage runs nest under it so
one pipeline execution reads as one row with children in `mlflow ui`. A stage run by hand (`dvc repro`
alone) is a top-level run. The store defaults to `sqlite:///mlflow.db` in the project root (see
cssl_core/project.py); outside a project it is created in the working directory, with a note saying so.

A process killed outright (kill -9, a timeout, the OOM killer) cannot end its run, which would stay
RUNNING for ever. So every run records the process that opened it (host, pid, start time), and the next
run of the same stage (or pipeline) ends such a run as KILLED, with a `cssl.end_reason` tag, once that
process is gone. A run whose process is still alive is a concurrent run and is left alone.

Only figures and parameters go in: never a path under data/raw, a header value or an exception text
from a DICOM reader, so that nothing identifying can land in the tracking store.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cssl_core.project import find_project_root, not_a_project_text

PARENT_RUN_ENV = "CSSL_MLFLOW_PARENT_RUN_ID"
EXPERIMENT_ENV = "CSSL_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "cssl-pipeline"
PIPELINE_RUN = "pipeline"
HOST_TAG, PID_TAG, START_TAG, BOOT_TAG = "cssl.host", "cssl.pid", "cssl.process_start", "cssl.boot_id"
END_REASON_TAG = "cssl.end_reason"
STALE_STATUS = "KILLED"


def store_root(project_root: Path | None = None) -> Path:
    """Where the default store lives: the given root, else the enclosing project, else the working directory."""
    return (project_root or find_project_root() or Path.cwd()).resolve()


def tracking_uri(project_root: Path | None = None) -> str:
    """The MLflow store: `MLFLOW_TRACKING_URI` if set, else SQLite in the project root."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{store_root(project_root) / 'mlflow.db'}"


def is_server_uri(uri: str) -> bool:
    """True for a tracking server (http/https): shared by many machines, so it decides where artifacts go."""
    return uri.split(":", 1)[0].lower() in ("http", "https")


def _note_new_store_outside_project(project_root: Path | None) -> None:
    """Outside a project a new store is easy to create by mistake: say where it goes (one stderr line)."""
    if os.environ.get("MLFLOW_TRACKING_URI") or project_root is not None or find_project_root() is not None:
        return
    root = store_root()
    if not (root / "mlflow.db").exists():
        print(
            f"note: {not_a_project_text()}: creating a new MLflow store {root / 'mlflow.db'} (artifacts in "
            f"{root / 'mlartifacts'}); set MLFLOW_TRACKING_URI to log to the site's store instead",
            file=sys.stderr,
            flush=True,
        )


def _note_moved_store(name: str, artifact_location: str, root: Path) -> None:
    """A copied or moved project keeps its store's absolute artifact location: runs and the registered encoder
    would be read from (and written to) the old folder. Say so in one line, with what to do."""
    if not artifact_location.startswith("file:"):
        return
    from urllib.parse import unquote, urlparse

    where = Path(unquote(urlparse(artifact_location).path))
    if where == root / "mlartifacts" / name or (root / "mlartifacts") in where.parents:
        return
    print(
        f"warning: MLflow experiment {name!r} keeps its artifacts in {where}, outside this project ({root}): was the "
        f"project moved or copied? Its runs and registered encoder are read from there; set {EXPERIMENT_ENV} to a new "
        "name to start a store here, or move the project back (and re-run scripts/setup.sh: a copied .venv keeps "
        "the old paths)",
        file=sys.stderr,
        flush=True,
    )


def configure(project_root: Path | None = None):
    """Point MLflow at the project store and experiment; returns the imported module."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _note_new_store_outside_project(project_root)
    import logging

    import mlflow

    # store migrations and the like log at INFO on stderr; stage output should be the stage's own lines
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    mlflow.set_tracking_uri(tracking_uri(project_root))
    name = os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)
    existing = mlflow.get_experiment_by_name(name)
    own_store = f"sqlite:///{store_root(project_root) / 'mlflow.db'}"
    if existing is not None and mlflow.get_tracking_uri() == own_store:  # the project's own store only
        _note_moved_store(name, existing.artifact_location, store_root(project_root))
    if existing is None:
        try:
            if is_server_uri(mlflow.get_tracking_uri()):
                # the server picks the artifact root (its --artifacts-destination, e.g. S3, proxied): a path on
                # this machine would be unreadable to every other client of the shared store
                mlflow.create_experiment(name)
            else:
                root = store_root(project_root)
                mlflow.create_experiment(name, artifact_location=(root / "mlartifacts" / name).as_uri())
        except mlflow.exceptions.MlflowException:
            if mlflow.get_experiment_by_name(name) is None:
                raise
            # a stage running side by side (a parallel comparison, a worker pool) created it first
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
    end_stale_runs(stage)
    parent = os.environ.get(PARENT_RUN_ENV)
    run_tags = {"cssl.stage": stage, "cssl.stage_kind": stage.split("@")[0], **process_tags()}
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    run_tags.update(tags or {})
    with mlflow.start_run(run_name=stage, tags=run_tags) as run:
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
        yield run


@contextlib.contextmanager
def pipeline_run(project_root: Path, driver: str) -> Iterator[Any]:
    """The parent run of one pipeline execution (`cssl repro`, the Prefect flow); stage runs nest under it."""
    mlflow = configure(project_root)
    end_stale_runs(PIPELINE_RUN)
    tags = {"cssl.driver": driver, **pipeline_tags(project_root), **process_tags()}
    with mlflow.start_run(run_name=PIPELINE_RUN, tags=tags) as run:
        yield run


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a Linux process, None where /proc cannot tell."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # the command name (in parentheses) may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_tags() -> dict[str, str]:
    """Who opened the run: enough to tell later whether that process is still there."""
    stat = _proc_stat(os.getpid())
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        START_TAG: stat[1] if stat else "",
        BOOT_TAG: _boot_id(),
    }


def process_gone(tags: Mapping[str, str]) -> bool:
    """True when the process that opened a run (per its tags) surely no longer runs on this host.

    Unknown means alive: a run from another host, or one without process tags, is never touched. A pid
    that now belongs to another process (another start time, or a reboot since) counts as gone, as does
    a zombie (killed, not yet reaped).
    """
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    if tags.get(BOOT_TAG) and _boot_id() and tags[BOOT_TAG] != _boot_id():
        return True
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, started = stat
    return state == "Z" or bool(tags.get(START_TAG)) and started != tags[START_TAG]


def end_stale_runs(run_name: str) -> list[str]:
    """End this experiment's RUNNING runs named `run_name` whose process is gone; returns their ids."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT))
    if experiment is None:
        return []
    quoted = run_name.replace("'", "\\'")
    runs = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"attributes.run_name = '{quoted}' and attributes.status = 'RUNNING'",
        output_format="list",
    )
    client = mlflow.MlflowClient()
    ended = []
    for run in runs:
        tags = run.data.tags
        if not process_gone(tags):
            continue
        reason = (
            f"process {tags[PID_TAG]} on {tags[HOST_TAG]} gone without ending its run: killed or timed out; "
            f"marked by the next run of {run_name}"
        )
        client.set_tag(run.info.run_id, END_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, status=STALE_STATUS)
        ended.append(run.info.run_id)
    return ended


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_artifacts(directory: Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifacts(str(directory), artifact_path=artifact_path)


def set_tag(key: str, value: str) -> None:
    import mlflow

    mlflow.set_tag(key, value)


def mark_failed(run_id: str) -> None:
    """End a run as FAILED after its `with` block closed it (a pipeline whose stages did not all succeed)."""
    import mlflow

    mlflow.MlflowClient().set_terminated(run_id, status="FAILED")


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


MODEL_NAME = "cssl-encoder"
BEST_ALIAS = "best"
NEWEST_ALIAS = "newest"
DIGEST_TAG = "cssl.encoder_digest"  # model-version tag: cssl_core.models.io.encoder_digest of the weights
SCORE_TAG = "average_final_linear_auc"
INPUT_TAG = "cssl.input"  # model-version tag: what the encoder takes (input_card)
EXAMPLE_BATCH = 2  # slices in the export example; any size > 1 keeps the batch dimension dynamic


def input_card(model: Any) -> str:
    """One line on what the registered encoder takes and gives (its model-version description and INPUT_TAG)."""
    config = model.config
    size, tokens = config.img_size, config.grid_size**2
    return (
        f"input: float32 tensor (N, 1, {size}, {size}), slices windowed and scaled to [0, 1] (window.size {size}); "
        f'another size is refused by the exported graph ("Guard failed"): resample to {size} px first; '
        f"output: (N, {tokens}, {config.hidden_size}) patch tokens of the encoder"
    )


def _version_with_digest(client, digest: str) -> str | None:
    for version in client.search_model_versions(f"name='{MODEL_NAME}'"):
        if version.tags.get(DIGEST_TAG) == digest:
            return str(version.version)
    return None


def register_encoder(model: Any, digest: str, score: float) -> str:
    """Register `model` (an encoder in eval mode) as `cssl-encoder` (a new version only when `digest` is new),
    tag it with its score, point `newest` at it and `best` at the best-scoring version; returns its version."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    client = MlflowClient()
    scored = "nan" if not math.isfinite(score) else f"{score:.6f}"
    version = _version_with_digest(client, digest)
    if version is None:
        # pt2 (torch.export) loads without unpickling code. torch.export turns a size-1 dimension of the
        # example into a constant, so the example holds EXAMPLE_BATCH slices: the batch stays dynamic
        example = torch.zeros(EXAMPLE_BATCH, 1, model.config.img_size, model.config.img_size)
        info = mlflow.pytorch.log_model(
            model,
            name="encoder",
            input_example=example.numpy(),
            serialization_format="pt2",
            pip_requirements=["torch==2.13.0"],
        )
        registered = mlflow.register_model(info.model_uri, MODEL_NAME, tags={DIGEST_TAG: digest, SCORE_TAG: scored,
                                                                             INPUT_TAG: input_card(model)})  # fmt: skip
        version = str(registered.version)
        # the exported graph refuses another size with only "Guard failed: x.size()[2] == 96": say it up front
        client.update_model_version(MODEL_NAME, version, description=input_card(model))
    else:
        print(f"report: encoder unchanged, reusing {MODEL_NAME} version {version}", flush=True)
    client.set_model_version_tag(MODEL_NAME, version, SCORE_TAG, scored)
    mlflow.set_tag("cssl.registered_version", version)
    best_version, best_score = version, score if math.isfinite(score) else -math.inf
    for other in client.search_model_versions(f"name='{MODEL_NAME}'"):
        tagged = other.tags.get(SCORE_TAG, "nan")
        value = float(tagged) if tagged != "nan" else -math.inf
        if value > best_score:
            best_version, best_score = str(other.version), value
    client.set_registered_model_alias(MODEL_NAME, BEST_ALIAS, best_version)
    client.set_registered_model_alias(MODEL_NAME, NEWEST_ALIAS, version)  # "latest" is reserved by MLflow
    return version
