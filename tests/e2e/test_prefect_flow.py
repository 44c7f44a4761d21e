"""The Prefect flow on a real (test-harness) Prefect server, running the DVC stages of a tiny project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.dag import stage_order
from tests.helpers import REPO_ROOT, tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def in_project(monkeypatch):
    def enter(root: Path) -> Path:
        monkeypatch.chdir(root)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        return root

    return enter


def one_cohort_params(window: str) -> dict:
    """phantom_a only (and the privacy audit's attacker cohort), one window, one continual stage, one probe task."""
    params = tiny_params()
    params["data"]["demo"].pop("phantom_b")
    params["ingest"]["cohorts"] = ["phantom_a", params["privacy"]["attacker_cohort"]]
    params["window"]["apply"] = [window]
    params["continual"]["stages"] = {"s1": {"prev": "init", "cohort": "phantom_a", "window": window}}
    params["eval"]["tasks"] = {"ggo": {"cohort": "phantom_a", "window": window, "label": "has_ggo", "mask_class": 1}}
    params["eval"]["probes"] = ["linear"]
    return params


def test_flow_runs_every_dvc_stage_in_dag_order(harness, in_project, tiny_pipeline, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.pipeline import cssl_pipeline

    root = in_project(tiny_pipeline.copy(tmp_path / "project", one_cohort_params("lung")))
    expected = [node.name for node in stage_order(root)]
    chain = ["demo-data@phantom_a", "ingest@phantom_a", "window@phantom_a-lung", "quality@phantom_a-lung",
             "pretrain@s1", "evaluate@s1", "report"]
    assert [name for name in expected if name in chain] == chain
    assert expected.index("pretrain@s1") < expected.index("export@s1")

    state = cssl_pipeline(project_dir=str(root), retries=0, return_state=True)
    assert state.is_completed(), state.message
    states = state.result()
    assert list(states) == expected and set(states.values()) == {"succeeded"}
    assert (root / "data/quality/phantom_a-lung.json").exists()

    import anyio

    async def task_runs():
        async with get_client() as client:
            flow_run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            runs = await client.read_task_runs(flow_run_filter=flow_run_filter)
            return sorted((r.expected_start_time, r.name, r.state_type.value) for r in runs)

    runs = anyio.run(task_runs)
    assert [name for _, name, _ in runs] == expected
    assert {kind for _, _, kind in runs} == {"COMPLETED"}


def test_failed_stage_skips_downstream_and_fails_the_flow(harness, in_project, tiny_pipeline, tmp_path):
    from flows.pipeline import cssl_pipeline

    params = one_cohort_params("mediastinal")
    params["ingest"]["cohorts"] = ["phantom_a", params["privacy"]["attacker_cohort"], "empty_site"]
    params["quality"]["cohorts"]["empty_site"] = {}  # every ingested cohort needs one (cssl check, DVC)
    root = in_project(tiny_pipeline.copy(tmp_path / "project", params))
    (root / "data/raw/empty_site").mkdir(parents=True)
    (root / "data/raw/empty_site/notes.txt").write_text("no DICOM here\n")

    state = cssl_pipeline(project_dir=str(root), retries=1, return_state=True)
    assert state.is_failed()
    assert "ingest@empty_site" in state.message
    states = state.result(raise_on_failure=False)
    assert states["ingest@empty_site"] == "failed"
    assert states["window@empty_site-mediastinal"] == "skipped"
    assert states["quality@empty_site-mediastinal"] == "skipped"
    assert states["quality@phantom_a-mediastinal"] == "succeeded"
    # evaluation reads every windowed cohort, so it waits for the failed branch; training does not
    assert states["pretrain@s1"] == "succeeded" and states["evaluate@s1"] == "skipped"


def test_cli_flow_run_logs_no_telemetry_error(tmp_path):
    """Offline, Prefect's server telemetry logged an ERROR on every `cssl flow run`; the project turns it off."""
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs:\n      - out.txt\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    result = subprocess.run([str(Path(sys.executable).parent / "cssl"), "flow", "run"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "succeeded  hello" in result.stdout and (root / "out.txt").read_text() == "hello\n"
    assert "telemetry" not in output.lower(), output
    assert not [line for line in output.splitlines() if "| ERROR" in line], output


def test_project_prefect_settings_turn_server_telemetry_off():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER")}
    view = subprocess.run([str(Path(sys.executable).parent / "prefect"), "config", "view", "--show-sources"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    assert "PREFECT_SERVER_ANALYTICS_ENABLED='False' (from prefect.toml)" in view.stdout


def _toy_project(root: Path, stages: dict[str, dict]) -> Path:
    import yaml

    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return root


def test_cli_dask_runner_runs_independent_stages_at_once_and_skips_below_a_failure(tmp_path):
    """`cssl flow run --runner dask`: two independent 4-s stages overlap in time (each records when it ran), the
    stage below a failed one is skipped, the independent branch still runs, dvc.lock records every stage that ran,
    and the exit code says the flow failed."""
    stamp = "python -c \"import time; print(time.time())\""
    stages = {
        "a": {"cmd": f"{stamp} > a.txt && sleep 4 && {stamp} >> a.txt", "outs": ["a.txt"]},
        "b": {"cmd": f"{stamp} > b.txt && sleep 4 && {stamp} >> b.txt", "outs": ["b.txt"]},
        "broken": {"cmd": "echo partial > broken.txt && exit 3", "outs": ["broken.txt"]},
        "below": {"cmd": "cp broken.txt below.txt", "deps": ["broken.txt"], "outs": ["below.txt"]},
        "after_a": {"cmd": "cp a.txt after_a.txt", "deps": ["a.txt"], "outs": ["after_a.txt"]},
    }
    root = _toy_project(tmp_path / "project", stages)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"  # Prefect's 20 s is short on a loaded machine
    result = subprocess.run([str(Path(sys.executable).parent / "cssl"), "flow", "run", "--runner", "dask",
                             "--workers", "3", "--retries", "0"], cwd=root, env=env, capture_output=True, text=True,
                            timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = {line.split()[-1]: line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert lines == {"a": "succeeded", "b": "succeeded", "broken": "failed", "below": "skipped",
                     "after_a": "succeeded"}, output
    (a_start, a_end), (b_start, b_end) = ([float(x) for x in (root / f"{s}.txt").read_text().split()] for s in "ab")
    assert a_start < b_end and b_start < a_end, "stages a and b did not run at the same time"
    assert not (root / "below.txt").exists()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "a", "b", "after_a"], cwd=root, env=env,
                            capture_output=True, text=True, check=True)
    assert "up to date" in status.stdout, status.stdout  # concurrent dvc.lock updates lost nothing


def test_dask_runner_runs_the_demo_pipeline_like_the_sequential_one(harness, in_project, tiny_pipeline, tmp_path):
    """The real (tiny) pipeline through prefect-dask's DaskTaskRunner: every stage succeeds, the states come back
    in DAG order, some independent stages did overlap, and DVC then finds nothing to re-run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.pipeline import cssl_pipeline, dask_task_runner

    root = in_project(tiny_pipeline.copy(tmp_path / "project", one_cohort_params("lung")))
    expected = [node.name for node in stage_order(root)]
    pipeline = cssl_pipeline.with_options(task_runner=dask_task_runner(2))
    state = pipeline(project_dir=str(root), retries=0, fan_out=True, return_state=True)
    assert state.is_completed(), state.message
    states = state.result()
    assert list(states) == expected and set(states.values()) == {"succeeded"}

    import anyio

    async def task_runs():
        async with get_client() as client:
            flow_run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            return await client.read_task_runs(flow_run_filter=flow_run_filter)

    runs = [(r.name, r.start_time, r.end_time) for r in anyio.run(task_runs)]
    assert sorted(name for name, _, _ in runs) == sorted(expected)
    overlapping = [(a, b) for a, s1, e1 in runs for b, s2, e2 in runs if a < b and s1 < e2 and s2 < e1]
    assert overlapping, "no two stages ran at the same time"
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, capture_output=True,
                            text=True, check=True)
    assert status.stdout.strip() == "{}", status.stdout
