"""What each pipeline stage pays before and around its work: `--help`, imports, and a whole stage run.

Every DVC stage is a fresh `cssl <command>` process, so every stage of the demo, of every end-to-end test and
of every `cssl compare` experiment pays its own imports. This bench measures, per stage of a finished
project's dvc.lock (one stage per command unless --all):
- `help_wall_s`, `help_cpu_s`: `cssl <command> --help` (the CLI alone: typer and the layout module);
- `run_wall_s`, `run_cpu_s`: the stage's own command from dvc.lock, run in a copy of the project (outputs are
  rewritten with the same content), with `python -X importtime`;
- `import_s`: the cumulative import time of each heavy library that run loaded (torch, monai, mlflow,
  great_expectations, ...), and `imports_total_s`, all top-level imports together (importtime's own overhead
  included, so a little above a plain run's);
- `dvc_repro_wall_s` (with --dvc): `dvc repro --single-item --force <stage>` around the same command, so the
  gap to `run_wall_s` is DVC's own share (hashing, locks, dvc.lock).
On the tiny project (--tiny: tests/helpers.py's configuration, built and run once here) the stages' work is
small, so a run is mostly start-up. Prints one JSON object to stdout; progress goes to stderr.

Usage: python bench/stage_startup.py --tiny [--dvc] [--all]
       python bench/stage_startup.py --project PATH   (a project after `dvc repro`; runs its stages' real work)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEAVY = ("torch", "monai", "mlflow", "great_expectations", "ot", "sklearn", "scipy", "skimage", "matplotlib",
         "pandas", "pyarrow", "SimpleITK", "pydicom", "nibabel", "prefect", "dvc", "dask")
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)$")


def env() -> dict[str, str]:
    out = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


def timed(command: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child and its children, result)."""
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, done


def imports(stderr: str) -> tuple[dict[str, float], float]:
    """Cumulative import seconds of each heavy top-level package, and of all top-level imports."""
    heavy: dict[str, float] = {}
    total = 0.0
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if not match:
            continue
        seconds, name = int(match.group(2)) / 1e6, match.group(4)
        if len(match.group(3)) == 1:  # one space of indent: a top-level import
            total += seconds
        if name in HEAVY:  # a package is imported once, at whatever depth the first importer sits
            heavy[name] = round(max(heavy.get(name, 0.0), seconds), 3)
    return heavy, round(total, 3)


def tiny_project(base: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.helpers import make_tiny_project

    root = make_tiny_project(base / "project")
    print("bench: running the tiny pipeline once (a few minutes)...", file=sys.stderr, flush=True)
    wall, _, done = timed([str(BIN / "cssl"), "repro"], root)
    if done.returncode:
        sys.exit(f"error: the tiny pipeline failed: {done.stderr[-2000:]}")
    print(f"bench: tiny pipeline in {wall:.0f} s", file=sys.stderr, flush=True)
    return root


def measure(root: Path, everything: bool, with_dvc: bool) -> list[dict]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    seen: set[str] = set()
    rows = []
    for stage, entry in lock.items():
        words = shlex.split(entry["cmd"])
        if words[0] != "cssl" or (words[1] in seen and not everything):
            continue
        seen.add(words[1])
        help_wall, help_cpu, _ = timed([str(BIN / "cssl"), words[1], "--help"], root)
        run_wall, run_cpu, done = timed([sys.executable, "-X", "importtime", str(BIN / "cssl"), *words[1:]], root)
        heavy, total = imports(done.stderr)
        row = {"stage": stage, "command": words[1], "help_wall_s": round(help_wall, 2),
               "help_cpu_s": round(help_cpu, 2), "run_wall_s": round(run_wall, 2), "run_cpu_s": round(run_cpu, 2),
               "imports_total_s": total, "import_s": heavy, "rc": done.returncode}
        if with_dvc:
            wall, _, repro = timed([sys.executable, "-m", "dvc", "repro", "--single-item", "--force", stage], root)
            row["dvc_repro_wall_s"] = round(wall, 2) if repro.returncode == 0 else None
        print(f"bench: {stage}: run {run_wall:.1f} s, imports {total:.1f} s", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tiny", action="store_true", help="build and run tests/helpers.py's tiny project first")
    where.add_argument("--project", type=Path, help="a finished project (copied; the original is not touched)")
    parser.add_argument("--all", action="store_true", help="every stage, not one per command")
    parser.add_argument("--dvc", action="store_true", help="also time `dvc repro --single-item --force` per stage")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cssl-startup-") as tmp:
        if args.tiny:
            root = tiny_project(Path(tmp))
        else:
            root = Path(tmp) / "project"
            shutil.copytree(args.project, root, symlinks=True, ignore=shutil.ignore_patterns("tmp", ".venv"))
        rows = measure(root, args.all, args.dvc)
    print(json.dumps({"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "stages": rows}))


if __name__ == "__main__":
    main()
