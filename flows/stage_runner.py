"""Running one DVC stage as a subprocess, shared by `cssl repro` and the Prefect flow.

Stages run through `dvc repro` (never by calling their command directly), so DVC's change detection,
locking and dvc.lock stay in charge: a stage whose inputs did not change is skipped in a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tasks.tracking import PARENT_RUN_ENV


def stage_env(parent_run_id: str | None) -> dict[str, str]:
    """Environment for stage commands: this interpreter's bin dir first, so `cssl` and `dvc` resolve."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    return env


def dvc_repro(
    project_dir: Path,
    targets: Sequence[str] = (),
    *,
    single_item: bool = False,
    force: bool = False,
    parent_run_id: str | None = None,
    on_line: Callable[[str], None] = lambda line: print(line, flush=True),
    wait_for_lock: bool = False,
) -> tuple[int, list[str]]:
    """Run `dvc repro`; stream each output line to `on_line`; return (exit code, output lines).

    `wait_for_lock` (DVC's global `--wait-for-lock`) is for stages run side by side in one workspace: DVC releases
    its repository lock while a stage's command runs, but takes it before and after, and without this flag a
    process that finds it taken gives up after ~3 s ("Unable to acquire lock"; see docs/scale-out.md).
    """
    command = [sys.executable, "-m", "dvc", *(["--wait-for-lock"] if wait_for_lock else []), "repro", *targets]
    if single_item:
        command.append("--single-item")
    if force:
        command.append("--force")
    process = subprocess.Popen(
        command,
        cwd=project_dir,
        env=stage_env(parent_run_id),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip("\n")
        lines.append(line)
        on_line(line)
    return process.wait(), lines
