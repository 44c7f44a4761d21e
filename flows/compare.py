"""`cssl compare`: every strategy and ablation x seeds as queued DVC experiments, then one report.

Each (variant, seed) is `dvc exp run --queue -n <variant>-s<seed> -S ...`; the queue runs one experiment at
a time (stages share the CPU), DVC's run-cache restores the unchanged data stages, and the metrics of
every finished experiment are read back through DVC's Python API (`Repo.experiments.show`, what
`dvc exp show --json` prints). An experiment that fails is kept in the table as failed, never dropped.
Results are compared only at the same training budget: the config fixes epochs and batch size for every
variant.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cssl_core.config.compare import config_entry, leaf_settings
from cssl_core.layout import METRICS, PRIVACY, SUMMARY_METRICS
from cssl_core.share import SHARE_ENV
from flows.stage_runner import stage_env

REPORTS = Path("reports")
POLL_SECONDS = 20
MAX_WORKER_STARTS = 4
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
SHARE = Path(".cssl") / "share"  # results the experiments share (cssl_core.share): finished first stages, their probes
SHARED_KINDS = ("checkpoints", "probes")  # the kinds of cssl_core.share.share_dir the stages write
RUN_RECORD = "compare-run.json"  # wall time of the last full run, so a later --collect-only still states it
METRICS_FILES = (SUMMARY_METRICS.as_posix(),)
# per-stage metric files merged into an experiment's metrics under a key of their own, {stage: content}:
# the buffer's privacy audit (audit@<stage>) and the training record of pretrain@<stage> (its final val MAE)
PRIVACY_REPORT = re.compile(rf"(?:.*/)?{re.escape(PRIVACY.as_posix())}/([^/]+)\.json")
PRETRAIN_RECORD = re.compile(rf"(?:.*/)?{re.escape(METRICS.as_posix())}/pretrain-([^/]+)\.json")


def _dvc(project_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Queue-side DVC commands (`exp remove`, `exp run --queue`) stay on the CLI: `dvc.api` has no run or
    queue function (only `exp_save`), `Repo.experiments.run(queue=True)` and `.remove` are undocumented
    internals, and the CLI's `-S` parsing is the documented one each queued experiment must start from."""
    env = stage_env(None)
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project_dir, env=env, text=True, capture_output=True, check=check
    )


def _overrides(settings: dict[str, Any]) -> list[str]:
    """`-S key=value` arguments for `dvc exp run`. A dict value becomes one override per leaf
    (`eval.finetune.steps=30`): Hydra's grammar, which DVC parses -S with, rejects JSON's quoted keys, and a leaf
    at a time also leaves the block's other keys as params.yaml has them. Each key is `++`-prefixed (Hydra's "set or
    add"): a plain `key=value` is refused for a key params.yaml lacks, e.g. a stage's own
    `continual.stages.s2.train.lr`; a misspelt key still fails, in `cssl compare`'s check of every run's params."""
    out = []
    for key, value in leaf_settings(settings):
        out += ["-S", f"++{key}={json.dumps(value) if isinstance(value, bool | list) else value}"]
    return out


def experiment_names(params: dict[str, Any], config: str) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(experiment name, variant, seed, -S overrides) for every run of the config."""
    block = params["compare"]
    chosen = config_entry(params, config)
    runs = []
    for variant in chosen.get("variants", list(block["variants"])):
        for seed in chosen["seeds"]:
            settings = {
                **chosen.get("overrides", {}),
                **block["variants"][variant],
                "ssl.train.seed": seed,
                "eval.seed": seed,
            }
            runs.append((f"{variant}-s{seed}", variant, int(seed), settings))
    return runs


def empty_share(share: Path) -> None:
    """What the experiments share is valid for one run's code only: a run starts without earlier entries. Only
    the kinds this project writes are removed, should CSSL_SHARE name a directory that holds anything else."""
    for kind in SHARED_KINDS:
        shutil.rmtree(share / kind, ignore_errors=True)


Collected = tuple[dict[str, dict[str, Any] | None], dict[str, str]]  # what `collect` returns


def queue_and_run(
    project_dir: Path, runs: list[tuple[str, str, int, dict[str, Any]]], jobs: int = 1
) -> Collected | None:
    """Queue every run and wait until the queue is empty; with `jobs` > 1, that many experiments run side by side.

    Side by side, each experiment's stages get cpus // jobs threads (OMP_NUM_THREADS): two torch processes
    that each take every core spin against each other and run slower together than one after the other. The
    first stage of a seed is shared (cssl_core.share), so two experiments of one seed must not both train it:
    the runs are queued variant by variant, every seed of the first variant before any second variant, so with
    no more jobs than seeds a seed's second experiment starts only after its first has finished. DVC's parallel
    queue sometimes fails an experiment without a log (treeverse/dvc#10673): with jobs > 1, what failed is
    queued once more before the report is written.

    Returns what that check collected when nothing had to be queued again (the report reads the same
    experiments, and one `dvc exp show` over a comparison takes seconds), else None.
    """
    absolute = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{(project_dir / 'mlflow.db').resolve()}",
        "CSSL_SECRET_FILE": str((project_dir / ".cssl" / "secret.key").resolve()),
        # stage 1 trains alike under every strategy (Strategy.training_identity): the first experiment of a
        # seed trains and evaluates it, the others take both from here instead of recomputing the same numbers
        SHARE_ENV: str((project_dir / SHARE).resolve()),
    }
    for key, value in absolute.items():
        os.environ.setdefault(key, value)  # queued experiments run in temp copies of the repo
    empty_share(Path(os.environ[SHARE_ENV]))
    if jobs > 1:
        _prepare_tracking_store(project_dir)
    _queue(project_dir, runs)
    started = time.perf_counter()
    _wait_for_queue(project_dir, len(runs), jobs, started)
    if jobs == 1:
        return None
    collected = collect(project_dir, [name for name, *_ in runs])
    failed = [name for name, result in collected[0].items() if result is None]
    if not failed:
        return collected
    print(
        f"compare: {len(failed)} experiment(s) failed ({', '.join(sorted(failed))}); queuing them once more "
        "(DVC's parallel queue can fail an experiment without a log)",
        flush=True,
    )
    again = [run for run in runs if run[0] in failed]
    _queue(project_dir, again)
    _wait_for_queue(project_dir, len(again), jobs, started)
    return None


def _queue(project_dir: Path, runs: list[tuple[str, str, int, dict[str, Any]]]) -> None:
    for name, _, _, settings in runs:
        _dvc(project_dir, "exp", "remove", name, check=False)
        _dvc(project_dir, "exp", "run", "--queue", "-n", name, *_overrides(settings))


def _wait_for_queue(project_dir: Path, total: int, jobs: int, started: float) -> None:
    _start_worker(project_dir, jobs)
    # No `dvc queue stop` at the end: the worker exits by itself once the queue is empty, and a stop sent
    # when no worker listens stays in the queue's broker and shuts down the next run's worker after one
    # experiment. A worker that is gone while experiments wait (killed, or stopped that way by someone
    # else) is replaced, up to MAX_WORKER_STARTS times.
    starts, missed, done = 1, 0, 0
    while True:
        pending, workers = queue_status(project_dir)
        # never backwards: while the worker commits an experiment, one poll can count it as running again
        done = max(done, total - pending)
        print(f"compare: {done}/{total} experiments finished ({time.perf_counter() - started:.0f}s)", flush=True)
        if pending == 0:
            break
        missed = missed + 1 if workers == 0 else 0
        if missed >= 2:  # two polls apart, so a worker that is still starting is not mistaken for a dead one
            if starts >= MAX_WORKER_STARTS:
                raise RuntimeError(
                    f"the DVC queue worker stopped {starts} times with {pending} experiment(s) still queued; see "
                    f"{project_dir}/.dvc/tmp/exps/celery/*.out, then run `dvc queue start` and "
                    "`cssl compare --collect-only`"
                )
            print(f"compare: no queue worker alive with {pending} experiment(s) queued; starting one", flush=True)
            _start_worker(project_dir, jobs)
            starts, missed = starts + 1, 0
        time.sleep(POLL_SECONDS)


def _prepare_tracking_store(project_dir: Path) -> None:
    """Create the MLflow store and experiment before parallel experiments race to create them."""
    from tasks.tracking import configure

    configure(project_dir)


def worker_env(jobs: int) -> dict[str, str]:
    """The stage environment, with each of `jobs` side-by-side experiments on its share of the cores (unless the
    user set the thread counts)."""
    env = stage_env(None)
    if jobs > 1:
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        for key in THREAD_VARIABLES:
            env.setdefault(key, threads)
    return env


def _start_worker(project_dir: Path, jobs: int = 1) -> None:
    # the worker is a daemon that inherits our pipes: do not capture them, or this call waits for it. It stays
    # a `dvc queue start` subprocess: in-process, `celery_queue.start_workers` would fork this interpreter
    # (multiprocessing) and look `dvc` up on its PATH, without stage_env's interpreter bin dir first.
    subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)],
        cwd=project_dir,
        env=worker_env(jobs),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )


def queue_status(project_dir: Path) -> tuple[int, int]:
    """(experiments queued or running, queue workers alive), read the way `dvc queue status` reads them.

    A fresh Repo per poll, as each `dvc queue status` call had: the worker commits experiments meanwhile.
    Failures keep their CLI-era meaning: a task list that cannot be read counts as an empty queue (the
    failed command printed no table), and workers that cannot be counted count as one alive, since an
    unknown answer must not trigger restarts.
    """
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        queue = repo.experiments.celery_queue
        try:
            tasks = queue.status()
        except Exception:  # as any failure of `dvc queue status` did
            return 0, 1
        try:
            workers: dict[str, list[Any]] | None = queue.worker_status()
        except Exception:
            workers = None
    return queue_state(tasks, workers)


def unfinished_names(project_dir: Path) -> set[str]:
    """Names of the experiments the DVC queue still holds as queued or running (none when it cannot be read)."""
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        try:
            tasks = repo.experiments.celery_queue.status()
        except Exception:  # no queue (never used) reads as nothing waiting
            return set()
    return unfinished_in(tasks)


def unfinished_in(tasks: list[dict[str, Any]]) -> set[str]:
    return {task["name"] for task in tasks if task.get("status") in ("Queued", "Running") and task.get("name")}


def queue_state(tasks: list[dict[str, Any]], workers: dict[str, list[Any]] | None) -> tuple[int, int]:
    """(experiments queued or running, queue workers alive) from the queue's tasks and its workers' active
    tasks (None: unknown, counted as one so that it never triggers a restart). A running experiment counts as a
    live worker too: on a loaded machine celery's worker inspection can time out and report none while an
    experiment runs (seen with 170-s experiments on 2 busy cores), and restarting then only adds idle workers."""
    pending = sum(task.get("status") in ("Queued", "Running") for task in tasks)
    running = any(task.get("status") == "Running" for task in tasks)
    alive = 1 if workers is None else len(workers)
    return pending, max(alive, 1) if running else alive


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _per_stage(records: dict[str, dict[str, Any]], pattern: re.Pattern[str]) -> dict[str, dict[str, Any]]:
    """{stage: content} of the metric files whose path matches `pattern` (the stage is its one group)."""
    found = {}
    for path, content in records.items():
        matched = pattern.fullmatch(path.replace("\\", "/"))
        if matched and isinstance(content, dict) and content:
            found[matched.group(1)] = content
    return found


def merge_metrics(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """One experiment's metrics for the report, from the `metrics` dict `show_experiments` gives it
    (path -> {"data": content}); None when it has no summary (the experiment failed).

    The summary files of METRICS_FILES are merged flat; timings are kept out of the summary (it must not
    change when a stage merely re-runs) and summed from the per-stage run records into "cost"; every
    data/privacy/<stage>.json goes under "privacy" and every data/metrics/pretrain-<stage>.json under
    "pretrain", {stage: content}. `dvc exp show` drops lists and nulls from metrics, so a privacy report
    here lacks e.g. labels_in_buffer (cssl_core/reporting/comparison.py reads the whole file where it can).
    """
    from cssl_core.reporting.tree import timings_from_metrics

    records = {path: (value or {}).get("data") or {} for path, value in (metrics or {}).items()}
    merged: dict[str, Any] = {}
    for path in METRICS_FILES:
        merged.update(records.get(path) or {})
    if not merged:
        return None
    merged.setdefault("cost", {}).update(timings_from_metrics(records))
    for key, pattern in (("privacy", PRIVACY_REPORT), ("pretrain", PRETRAIN_RECORD)):
        per_stage = _per_stage(records, pattern)
        if per_stage:
            merged[key] = per_stage
    return merged


def collect(project_dir: Path, names: list[str]) -> tuple[dict[str, dict[str, Any] | None], dict[str, str]]:
    """Metrics (None when it has none: failed) and commit of each named experiment, from `show_experiments`."""
    return experiments_from_shown(show_experiments(project_dir), names)


def show_experiments(project_dir: Path) -> list[dict[str, Any]]:
    """Every experiment of every commit, exactly as `dvc exp show --json -A` prints them, read in-process.

    `dvc.api.exp_show` would be the documented call, but it returns `dvc exp show`'s table rows: each metric
    flattened into a "<file>:<key.path>" column, with no per-file contents left to merge (merge_metrics needs
    them), so this calls what that function and the CLI both call, `Repo.experiments.show`. The JSON round
    trip gives the CLI's types: ISO timestamps, errors as {"type", "msg"}, lists for tuples.
    """
    from datetime import date, datetime

    from dvc.repo import Repo
    from dvc.utils.serialize import encode_exception

    def as_json(item: Any) -> Any:
        return item.isoformat() if isinstance(item, date | datetime) else encode_exception(item)

    with Repo(str(project_dir)) as repo:
        states = repo.experiments.show(all_commits=True)
        return json.loads(json.dumps([state.dumpd() for state in states], default=as_json))


def experiments_from_shown(shown: Any, names: list[str]) -> tuple[dict[str, dict[str, Any] | None], dict[str, str]]:
    """`collect` on what `show_experiments` gives: merged metrics and commit per named experiment."""
    found: dict[str, dict[str, Any] | None] = {name: None for name in names}
    revs: dict[str, str] = {}
    for entry in _walk(shown):
        name = entry.get("name")
        data = entry.get("data")
        if name in found and isinstance(data, dict):
            merged = merge_metrics(data.get("metrics") or {})
            if merged:
                found[name] = merged
                if isinstance(entry.get("rev"), str):
                    revs[name] = entry["rev"]
    return found, revs


def _wall_time(reports: Path, config: str, measured: float | None, jobs: int = 1) -> tuple[float | None, int]:
    """Record the measured wall time of a full run and how many experiments ran side by side; `--collect-only`
    re-reports the recorded ones. Returns (wall seconds or None, jobs).

    Both paths report the recorded (rounded) figure: reporting the unrounded one after a run made the report
    change when it was rebuilt from the same experiments (8.3 min written, 8.2 min rebuilt).
    """
    record = reports / RUN_RECORD
    if measured is not None:
        reports.mkdir(parents=True, exist_ok=True)
        entry = {"config": config, "wall_seconds": round(measured, 1), "cpus": os.cpu_count(), "jobs": jobs}
        record.write_text(json.dumps(entry, indent=2) + "\n")
        return float(entry["wall_seconds"]), jobs
    if record.exists():
        entry = json.loads(record.read_text())
        if entry.get("config") == config:
            return float(entry["wall_seconds"]), int(entry.get("jobs", 1))
    return None, jobs


def run_compare(
    project_dir: Path, params: dict[str, Any], config: str, collect_only: bool = False, jobs: int | None = None
) -> Path:
    """Run (unless `collect_only`) and report one compare config; `jobs` overrides the config's `jobs`."""
    from cssl_core.reporting.comparison import write_report
    from flows.experiment_files import ExperimentFiles

    runs = experiment_names(params, config)
    jobs = jobs or int(config_entry(params, config).get("jobs", 1))
    started = time.perf_counter()
    collected = None if collect_only else queue_and_run(project_dir, runs, jobs)
    results, revs = collected or collect(project_dir, [name for name, *_ in runs])
    unfinished = unfinished_names(project_dir) if collect_only else set()
    elapsed, jobs = _wall_time(
        project_dir / REPORTS, config, None if collect_only else time.perf_counter() - started, jobs
    )
    with ExperimentFiles(project_dir, revs) as files:
        return write_report(project_dir / REPORTS, runs, results, params, config, elapsed, files, unfinished, jobs)
