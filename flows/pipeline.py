"""The Prefect flow: every DVC stage as a Prefect task, in the order DVC's graph gives.

By default (runner `sequential`) stages run one at a time, in DAG order. Runner `dask` fans out: a stage is
submitted to prefect-dask's DaskTaskRunner as soon as every stage upstream of it has succeeded, up to `workers`
stages at once, each its own `dvc --wait-for-lock repro --single-item <stage>` in the one workspace. That is
safe because DVC releases its repository lock while a stage's command runs and guards each stage's deps and
outs with its own read/write locks (measured: docs/scale-out.md, "Prefect flow and DVC locks"). Either way a
failed stage (after its retries) marks its downstream stages as skipped while independent branches still run,
and the flow ends failed. Each stage's output streams into the Prefect task log; a table artifact summarises the run.
The MLflow parent run opened here groups the stages' runs of this execution.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
# no usage telemetry (as prefect.toml says): offline, the ephemeral server logged an ERROR on every run
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_table_artifact  # noqa: E402
from prefect.states import Failed, State  # noqa: E402

from flows.dag import stage_order  # noqa: E402
from flows.errors import CliError  # noqa: E402
from flows.stage_runner import dvc_repro  # noqa: E402
from tasks import tracking  # noqa: E402

SUCCEEDED, FAILED, SKIPPED = "succeeded", "failed", "skipped"
RUNNERS = ("sequential", "dask")
TAIL_LINES = 15


class StageFailed(RuntimeError):
    pass


@task(name="dvc-stage", retry_delay_seconds=2, task_run_name="{stage}")
def run_stage(
    stage: str, project_dir: str, force: bool, parent_run_id: str | None, wait_for_lock: bool = False
) -> float:
    """`dvc repro --single-item <stage>`; raises with the output's tail when the stage fails."""
    logger = get_run_logger()
    started = time.perf_counter()
    code, lines = dvc_repro(
        Path(project_dir),
        [stage],
        single_item=True,
        force=force,
        parent_run_id=parent_run_id,
        on_line=logger.info,
        wait_for_lock=wait_for_lock,
    )
    if code != 0:
        tail = "\n".join(lines[-TAIL_LINES:])
        raise StageFailed(f"stage {stage} failed (exit {code}):\n{tail}")
    return time.perf_counter() - started


@flow(name="cssl-pipeline", log_prints=True)
def cssl_pipeline(
    project_dir: str = ".", retries: int = 1, force: bool = False, fan_out: bool = False
) -> dict[str, str] | State:
    """Run every stage of dvc.yaml; returns {stage: succeeded | failed | skipped}, in DAG order.

    `fan_out` submits independent stages side by side to the flow's task runner (run_pipeline sets a
    DaskTaskRunner); without it stages run one by one in this process.
    """
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    order = stage_order(root)
    logger.info("pipeline: %d stages from dvc.yaml", len(order))
    states: dict[str, str] = {}
    seconds: dict[str, float] = {}
    stage_task = run_stage.with_options(retries=retries)

    with tracking.pipeline_run(root, driver="prefect") as parent:
        if fan_out:
            _fan_out(order, stage_task, str(root), force, parent.info.run_id, states, seconds)
            states = {node.name: states[node.name] for node in order}  # DAG order, as the sequential runner gives
        else:
            for node in order:
                if any(states.get(up) != SUCCEEDED for up in node.upstream):
                    _skip(node.name, states)
                    continue
                state = stage_task(node.name, str(root), force, parent.info.run_id, return_state=True)
                _settle(node.name, state, states, seconds)
        n_failed = sum(s != SUCCEEDED for s in states.values())
        tracking.log_metrics({"stages": len(states), "stages_not_succeeded": n_failed})
    if n_failed:
        tracking.mark_failed(parent.info.run_id)
    create_table_artifact(
        key="cssl-pipeline-stages",
        table=[
            {"stage": name, "state": state, "seconds": round(seconds.get(name, 0.0), 2)}
            for name, state in states.items()
        ],
        description="Stages of this pipeline run, in DVC order",
    )
    if n_failed:
        failed = [name for name, state in states.items() if state == FAILED]
        message = f"{len(failed)} stage(s) failed: {', '.join(failed)}; {n_failed - len(failed)} skipped"
        return Failed(message=message, data=states)
    return states


def _fan_out(
    order: list, stage_task: Any, root: str, force: bool, run_id: str, states: dict[str, str], seconds: dict[str, float]
) -> None:
    """Submit each stage once all its upstream stages succeeded; skip it once one did not. The task runner bounds
    how many run at once (its worker threads)."""
    from prefect.futures import as_completed

    waiting = list(order)
    running: dict[Any, str] = {}
    while waiting or running:
        for node in list(waiting):
            if any(states.get(up) in (FAILED, SKIPPED) for up in node.upstream):
                waiting.remove(node)
                _skip(node.name, states)
            elif all(states.get(up) == SUCCEEDED for up in node.upstream):
                waiting.remove(node)
                running[stage_task.submit(node.name, root, force, run_id, wait_for_lock=True)] = node.name
        if not running:
            continue  # only skips happened this round: look at the waiting stages again
        done = next(iter(as_completed(list(running))))
        name = running.pop(done)
        done.wait()
        _settle(name, done.state, states, seconds)


def _skip(name: str, states: dict[str, str]) -> None:
    states[name] = SKIPPED
    get_run_logger().warning("skipping %s: an upstream stage did not succeed", name)


def _settle(name: str, state: State, states: dict[str, str], seconds: dict[str, float]) -> None:
    """Record a finished stage task, whichever runner ran it: its seconds when it succeeded."""
    if state.is_completed():
        states[name] = SUCCEEDED
        seconds[name] = state.result()
    else:
        states[name] = FAILED
        get_run_logger().error("stage %s failed after its retries", name)


def dask_task_runner(workers: int) -> Any:
    """prefect-dask's runner on an in-process Dask cluster (threads, no ports): each task only waits on its own
    `dvc repro` subprocess, so `workers` threads run `workers` stages at once."""
    from prefect_dask import DaskTaskRunner

    kwargs = {"n_workers": 1, "threads_per_worker": workers, "processes": False, "dashboard_address": None}
    return DaskTaskRunner(cluster_kwargs=kwargs)


def run_pipeline(
    project_dir: str = ".", retries: int = 1, force: bool = False, runner: str = "sequential", workers: int = 2
) -> dict[str, str]:
    """Run the flow once; returns the stage states even when the flow fails.

    `runner` is `sequential` (one stage at a time) or `dask` (independent stages side by side, `workers` at once).
    """
    if runner not in RUNNERS:
        raise ValueError(f"--runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    # read the DAG first: a bad dvc.yaml or params.yaml (a cycle, corrupt YAML) is then the CLI's one
    # `error:` line, not a crashed flow with Prefect's traceback
    stage_order(Path(project_dir).resolve())
    pipeline = cssl_pipeline
    if runner == "dask":
        pipeline = cssl_pipeline.with_options(task_runner=dask_task_runner(workers))
    state = pipeline(project_dir=project_dir, retries=retries, force=force, fan_out=runner == "dask", return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        return result
    raise StageFailed(f"pipeline flow ended {state.type.value}: {state.message}")


def serve_pipeline(project_dir: str, cron: str, name: str) -> None:
    """Serve a cron-scheduled deployment; needs PREFECT_API_URL pointing at `prefect server start`."""
    cssl_pipeline.serve(name=name, cron=cron, parameters={"project_dir": str(Path(project_dir).resolve())})


# where this module's code lives: the worker loads the flow from here (the cssl checkout or installed package)
CODE_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/pipeline.py:cssl_pipeline"


def ensure_process_pool(pool: str) -> bool:
    """Create the `process` work pool `pool` with Prefect's default process job template; True if it was created.

    An existing pool is kept as it is (its template may have been tuned), but it must be a process pool: a
    `prefect worker start --pool` on another type would not run the flow from a local checkout.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
            return True
    if existing.type != "process":
        raise CliError(f"work pool {pool!r} is of type {existing.type!r}, not process: name another --pool")
    return False


def deploy_pipeline(project_dir: str, pool: str, cron: str, name: str) -> str:
    """Deploy the flow, cron-scheduled, to the process work pool `pool` (created if missing); returns the id.

    The deployment loads the flow from this checkout (`from_source` with a local path: no image, no registry),
    so a `prefect worker start --pool <pool>` on this machine runs it in a subprocess: unlike `cssl flow
    serve`, the worker can be restarted, and runs survive the terminal that deployed them.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise CliError(
            "PREFECT_API_URL is not set: a work pool lives on a Prefect server; start one (`prefect server start`) "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    project = Path(project_dir).resolve()
    stage_order(project)  # a bad dvc.yaml is one error line now, not a failed run at 02:00
    ensure_process_pool(pool)
    source_flow = cssl_pipeline.from_source(source=str(CODE_ROOT), entrypoint=ENTRYPOINT)
    deployment_id = source_flow.deploy(
        name=name,
        work_pool_name=pool,
        cron=cron,
        parameters={"project_dir": str(project)},
        build=False,  # a process pool runs the local source: no Docker image to build or push
        push=False,
        print_next_steps=False,
    )
    return str(deployment_id)
