"""The Prefect flow: every DVC stage as a Prefect task, in the order DVC's graph gives.

Stages run one at a time because `dvc repro` holds a repository lock; a failed stage (after its
retries) marks its downstream stages as skipped while independent branches still run, and the flow
ends failed. Each stage's output streams into the Prefect task log; a table artifact summarises the run.
The MLflow parent run opened here groups the stages' runs of this execution.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
# no usage telemetry (as prefect.toml says): offline, the ephemeral server logged an ERROR on every run
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_table_artifact  # noqa: E402
from prefect.states import Failed, State  # noqa: E402

from flows.dag import stage_order  # noqa: E402
from flows.stage_runner import dvc_repro  # noqa: E402
from tasks import tracking  # noqa: E402

SUCCEEDED, FAILED, SKIPPED = "succeeded", "failed", "skipped"
TAIL_LINES = 15


class StageFailed(RuntimeError):
    pass


@task(name="dvc-stage", retry_delay_seconds=2, task_run_name="{stage}")
def run_stage(stage: str, project_dir: str, force: bool, parent_run_id: str | None) -> float:
    """`dvc repro --single-item <stage>`; raises with the output's tail when the stage fails."""
    logger = get_run_logger()
    started = time.perf_counter()
    code, lines = dvc_repro(
        Path(project_dir), [stage], single_item=True, force=force, parent_run_id=parent_run_id, on_line=logger.info
    )
    if code != 0:
        tail = "\n".join(lines[-TAIL_LINES:])
        raise StageFailed(f"stage {stage} failed (exit {code}):\n{tail}")
    return time.perf_counter() - started


@flow(name="cssl-pipeline", log_prints=True)
def cssl_pipeline(project_dir: str = ".", retries: int = 1, force: bool = False) -> dict[str, str] | State:
    """Run every stage of dvc.yaml; returns {stage: succeeded | failed | skipped}."""
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    order = stage_order(root)
    logger.info("pipeline: %d stages from dvc.yaml", len(order))
    states: dict[str, str] = {}
    seconds: dict[str, float] = {}
    stage_task = run_stage.with_options(retries=retries)

    with tracking.pipeline_run(root, driver="prefect") as parent:
        for node in order:
            if any(states.get(up) != SUCCEEDED for up in node.upstream):
                states[node.name] = SKIPPED
                logger.warning("skipping %s: an upstream stage did not succeed", node.name)
                continue
            state = stage_task(node.name, str(root), force, parent.info.run_id, return_state=True)
            if state.is_completed():
                states[node.name] = SUCCEEDED
                seconds[node.name] = state.result()
            else:
                states[node.name] = FAILED
                logger.error("stage %s failed after %d retries", node.name, retries)
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


def run_pipeline(project_dir: str = ".", retries: int = 1, force: bool = False) -> dict[str, str]:
    """Run the flow once; returns the stage states even when the flow fails."""
    # read the DAG first: a bad dvc.yaml or params.yaml (a cycle, corrupt YAML) is then the CLI's one
    # `error:` line, not a crashed flow with Prefect's traceback
    stage_order(Path(project_dir).resolve())
    state = cssl_pipeline(project_dir=project_dir, retries=retries, force=force, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        return result
    raise StageFailed(f"pipeline flow ended {state.type.value}: {state.message}")


def serve_pipeline(project_dir: str, cron: str, name: str) -> None:
    """Serve a cron-scheduled deployment; needs PREFECT_API_URL pointing at `prefect server start`."""
    cssl_pipeline.serve(name=name, cron=cron, parameters={"project_dir": str(Path(project_dir).resolve())})
