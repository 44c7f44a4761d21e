"""Wall time of the demo pipeline as a Prefect flow: `cssl flow run --runner sequential` vs `--runner dask`.

Each runner gets a fresh copy of the tiny demo project (tests/helpers.py: the repo's dvc.yaml and code, tiny
params: three phantom cohorts, two windows, the continual stages, evaluation, privacy audit, report) and runs
`cssl flow run --retries 0` in it as a user would (ephemeral Prefect API, SQLite MLflow in the project). With
`--runner dask` independent stages run side by side (`--workers`, default 2), each its own
`dvc --wait-for-lock repro --single-item`. The runners alternate order between rounds. Prints one JSON line;
`loadavg` is recorded because the gain depends on free cores.

Usage: python bench/flow_runner.py [--workers 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import make_tiny_project, tiny_params  # noqa: E402

CSSL = Path(sys.executable).with_name("cssl")


def run_flow(root: Path, runner: str, workers: int) -> dict:
    """One timed `cssl flow run` in `root`; the stage states it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{CSSL.parent}{os.pathsep}{env['PATH']}"
    env["PREFECT_HOME"] = str(root / ".prefect")
    # Prefect's default 20 s for its ephemeral API server to start is too short on a loaded 2-core machine
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    command = [str(CSSL), "flow", "run", "--retries", "0", "--runner", runner, "--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    states = [line.split() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
    return {"seconds": round(seconds, 2), "exit": done.returncode, "stages": len(states),
            "succeeded": sum(s[0] == "succeeded" for s in states)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="stages at once with --runner dask")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    report: dict = {"bench": "flow_runner", "cpu_count": os.cpu_count(), "workers": args.workers, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        for round_ in range(args.rounds):
            order = ("sequential", "dask") if round_ % 2 == 0 else ("dask", "sequential")
            for runner in order:
                root = make_tiny_project(Path(tmp) / f"{runner}-{round_}", tiny_params())
                result = {"runner": runner, "round": round_, **run_flow(root, runner, args.workers)}
                print(f"[bench/flow_runner] {result}", file=sys.stderr, flush=True)
                report["runs"].append(result)
    best = {r: min((x["seconds"] for x in report["runs"] if x["runner"] == r and x["exit"] == 0), default=None)
            for r in ("sequential", "dask")}
    report["seconds_best"] = best
    if best["sequential"] and best["dask"]:
        report["speedup_dask_vs_sequential"] = round(best["sequential"] / best["dask"], 3)
    report["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
