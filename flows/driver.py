"""`cssl repro`: the whole DAG through `dvc repro`, grouped under one MLflow parent run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from flows.stage_runner import dvc_repro
from tasks import tracking


def repro_with_parent_run(project_dir: Path, targets: Sequence[str], force: bool = False) -> int:
    with tracking.pipeline_run(project_dir, driver="cssl repro") as parent:
        started = time.perf_counter()
        code, _ = dvc_repro(project_dir, targets, force=force, parent_run_id=parent.info.run_id)
        tracking.log_metrics({"pipeline_seconds": time.perf_counter() - started, "exit_code": code})
        if code != 0:
            tracking.set_tag("cssl.failed", "true")
    if code != 0:
        tracking.mark_failed(parent.info.run_id)
    return code
