"""The `cssl` command: one sub-command per pipeline step, plus the drivers that run the whole DAG.

Heavy libraries (torch, MONAI, Great Expectations, MLflow, Prefect, DVC) are imported inside the
commands, so `cssl --help` answers at once. Commands raise; `main` alone turns failures into output:
expected ones (bad input, failed quality gate, bad params, full disk: see flows/errors.py) end with one
readable `error:` line and exit 2, never a traceback unless `--debug`.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from cssl_core.layout import (
    INIT,
    INTERIM,
    QUALITY,
    RAW,
    SUMMARY,
    SUMMARY_METRICS,
    WINDOWED,
    interim_dir,
    model_dir,
    passed_list,
    quality_report,
    raw_dir,
    screen_report,
    windowed_dir,
)
from flows.errors import DEBUG_ENV, EXIT_EXPECTED, CliError, debug_requested, internal_error_line, is_expected, message

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # failures are reported by main(): one line, or a plain traceback for bugs
    help="Continual SSL on multi-window chest CT: pipeline steps and drivers.",
)
flow_app = typer.Typer(no_args_is_help=True, help="Run or schedule the pipeline as a Prefect flow.")
app.add_typer(
    flow_app, name="flow", help="Run or schedule the pipeline as a Prefect flow (reads the DAG from dvc.yaml)."
)

site_app = typer.Typer(
    no_args_is_help=True, help="Share one continual schedule between sites: push/pull a stage's model and buffer."
)
app.add_typer(
    site_app,
    name="site",
    help="Hand a finished stage to the next site over the shared DVC remote (models and buffers only, no images).",
)

DEFAULT_PARAMS = Path("params.yaml")
ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
OptionalParams = Annotated[
    Path | None,
    typer.Option("--params", help="params.yaml to check first (default: ./params.yaml when there is one)."),
]


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the traceback of expected errors too (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Continual SSL on multi-window chest CT: pipeline steps and drivers."""
    if debug:
        os.environ[DEBUG_ENV] = "1"  # inherited by the stage commands that dvc repro starts


def _read_json(path: Path, remedy: str) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CliError(f"{path}: corrupt JSON ({error.msg}, line {error.lineno}); {remedy}") from error


def _checked_params(path: Path) -> dict[str, Any]:
    """params.yaml, loaded and validated as a whole (cssl_core.config), as the raw dict: for `cssl compare`,
    whose variants are overrides of the raw file."""
    from cssl_core.config import ProjectConfig
    from cssl_core.config.load import load_params

    loaded = load_params(path)
    ProjectConfig.from_params(loaded, source=str(path))
    return loaded


def _checked_config(path: Path) -> Any:
    """params.yaml as the typed ProjectConfig, validated as a whole before the command does any work.

    Every stage command calls this first and hands the result to its stage function: a typo or an inconsistent
    schedule is then one `error:` line at the start of the first stage DVC runs, not a traceback (or a missing
    path) stages later, and no stage indexes the raw file.
    """
    from cssl_core.config import ProjectConfig
    from cssl_core.config.load import load_params

    return ProjectConfig.from_params(load_params(path), source=str(path))


def _check_params_if_present(path: Path | None) -> None:
    """For commands that read no params themselves (ingest, dag, repro, flow run): check the named file, or
    ./params.yaml when there is one (ingest also runs outside a project, where there is none)."""
    if path is not None or DEFAULT_PARAMS.exists():
        _checked_params(path or DEFAULT_PARAMS)


@app.command()
def check(
    params: ParamsOption = DEFAULT_PARAMS,
    stamp: Annotated[
        Path | None,
        typer.Option(help="On success, write this file (dvc.yaml's first stage: every other stage waits on it)."),
    ] = None,
) -> None:
    """Validate params.yaml as a whole (keys, types, ranges, the schedule, cohorts, windows) without running anything.

    A `cssl compare` config whose runs this params.yaml would refuse is a warning, not an error: the pipeline
    itself runs (a gpu config may simply not fit a CPU model), but `cssl compare` would refuse that config.
    Under `dvc repro` it is the stage `check`, upstream of every other one: DVC deletes a stage's outputs just
    before running it, so a bad params.yaml must stop the DAG before any stage that reads it starts. The stamp's
    content never changes, so passing the check re-runs nothing downstream.
    """
    from cssl_core.config import ProjectConfig
    from cssl_core.config.load import load_params
    from cssl_core.config.project import compare_problems

    loaded = load_params(params)
    config = ProjectConfig.from_params(loaded, source=str(params))
    typer.echo(f"{params}: ok ({config.summary()})")
    for problem in compare_problems(loaded, source=str(params)):
        typer.echo(f"warning: {problem} (`cssl compare` refuses it)", err=True)
    if stamp is not None:
        from cssl_core.atomic_io import write_json

        stamp.parent.mkdir(parents=True, exist_ok=True)
        write_json(stamp, {"params": "checked"})


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the cohort(s).")],
    cohort: Annotated[
        str | None, typer.Option(help="One cohort of params data.demo; all of them (one subfolder each) when omitted.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Write the built-in demo data (synthetic phantom DICOM and the real NSCLC series) as DICOM."""
    config = _checked_config(params)
    from tasks.demo_data import run_demo_data

    names = [cohort] if cohort else sorted(config.data.demo)
    for name in names:
        target = out_dir if cohort else out_dir / name
        summary = run_demo_data(target, name, config)
        typer.echo(f"demo-data {name}: {summary.get('files', summary)} files -> {target}")


@app.command()
def ingest(
    input: Annotated[Path, typer.Option("--input", help="Folder of DICOM files (searched recursively).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for volumes, manifest and accounting.")],
    workers: Annotated[int, typer.Option(help="Worker processes over series.")] = 1,
    volume_format: Annotated[str, typer.Option(help="nii.gz (compressed) or nii.")] = "nii.gz",
    executor: Annotated[
        str,
        typer.Option(
            help="processes (a local process pool), dask (a local Dask cluster) or dask://host:port (an existing "
            "Dask scheduler)."
        ),
    ] = "processes",
    secret_file: Annotated[
        Path | None,
        typer.Option(help="The site's key secret file (else CSSL_SECRET_FILE, else the project's .cssl/secret.key)."),
    ] = None,
    params: OptionalParams = None,
) -> None:
    """Ingest DICOM: HU volumes (NIfTI), manifest, per-file accounting with quarantine reasons."""
    _check_params_if_present(params)
    from flows.secret import choose_secret, created_secret_line
    from tasks.ingest import run_ingest

    if volume_format not in ("nii.gz", "nii"):
        raise ValueError(f"--volume-format must be nii.gz or nii, got {volume_format!r}")
    if executor not in ("processes", "dask") and not executor.startswith("dask://"):
        raise ValueError(f"--executor must be processes, dask or dask://host:port, got {executor!r}")
    new_secret = choose_secret(secret_file)  # outside a project, refuses before anything is written
    summary = run_ingest(input, output, workers=workers, compress=volume_format == "nii.gz", executor=executor)
    typer.echo(
        f"ingest: {summary.get('n_series')} series, {summary.get('n_slices')} slices; files: "
        f"{summary.get('n_ingested')} ingested, {summary.get('n_quarantined')} quarantined, "
        f"{summary.get('n_ignored')} ignored -> {output}"
    )
    if new_secret is not None and new_secret.is_file():
        typer.echo(created_secret_line(new_secret))


@app.command()
def screen(
    cohort: Annotated[str, typer.Option(help="Cohort name (data/interim/<cohort>).")],
    interim: Annotated[Path, typer.Option(help="Ingested data root.")] = INTERIM,
    raw: Annotated[Path, typer.Option(help="Raw DICOM root, named in the advice on what to remove.")] = RAW,
    output: Annotated[Path, typer.Option(help="Quality reports root.")] = QUALITY,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Series-level quality gate before windowing: failing series are excluded (or stop the cohort)."""
    config = _checked_config(params)
    from tasks.screen import run_screen

    report = run_screen(interim_dir(cohort, interim), output, config, cohort, raw_dir=raw_dir(cohort, raw).as_posix())
    typer.echo(
        f"screen {cohort}: {report['n_passed']} of {report['n_series']} series passed, "
        f"{report['n_excluded']} excluded -> {screen_report(cohort, output)}"
    )


@app.command()
def window(
    cohort: Annotated[str, typer.Option(help="Cohort name (data/interim/<cohort>).")],
    window_name: Annotated[str, typer.Option("--window", help="Window preset name from params window.presets.")],
    interim: Annotated[Path, typer.Option(help="Ingested data root.")] = INTERIM,
    output: Annotated[Path, typer.Option(help="Windowed data root.")] = WINDOWED,
    quality: Annotated[
        Path, typer.Option(help="Quality reports root, holding the screen's <cohort>.passed.json.")
    ] = QUALITY,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Apply a CT window to the series that passed the screen: memory-mappable 2-D slices plus an index table."""
    config = _checked_config(params)
    from tasks.window import run_window

    meta = run_window(
        interim_dir(cohort, interim),
        windowed_dir(cohort, window_name, output),
        cohort,
        window_name,
        config,
        passed_path=passed_list(cohort, quality),
    )
    typer.echo(
        f"window {cohort}-{window_name}: {meta['n_slices']} slices {meta['size']}px {meta['dtype']} "
        f"from {meta['n_series']} series ({meta['n_series_excluded']} excluded by the screen)"
    )


@app.command()
def quality(
    cohort: Annotated[str, typer.Option(help="Cohort name.")],
    window_name: Annotated[str, typer.Option("--window", help="Window preset name.")],
    interim: Annotated[
        Path, typer.Option(help="Ingested data root (files.parquet names each series' files).")
    ] = INTERIM,
    windowed: Annotated[Path, typer.Option(help="Windowed data root.")] = WINDOWED,
    output: Annotated[Path, typer.Option(help="Quality reports root.")] = QUALITY,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Great Expectations gate on the windowed slices (after `screen`); hard failures exit non-zero."""
    config = _checked_config(params)
    from tasks.quality import run_quality

    report = run_quality(
        windowed_dir(cohort, window_name, windowed),
        quality_report(cohort, window_name, output),
        config,
        stage_name=f"quality@{cohort}-{window_name}",
        files_path=interim_dir(cohort, interim) / "files.parquet",
    )
    typer.echo(f"quality {cohort}-{window_name}: {report['n_passed']}/{report['n_expectations']} expectations passed")


@app.command("init-model")
def init_model(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Write the seeded random encoder (data/models/init) every continual schedule starts from."""
    config = _checked_config(params)
    from tasks.init_model import run_init

    summary = run_init(config)
    typer.echo(f"init: {summary['preset']} MAE with {summary['parameters']:,} parameters -> {model_dir(INIT)}")


@app.command()
def pretrain(
    stage: Annotated[str, typer.Option(help="Continual stage name from params continual.stages.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Train one continual SSL stage (resumes from its last checkpoint after a crash).

    With ssl.distributed over more than one process, relaunches itself through torchrun and exits with its code.
    """
    config = _checked_config(params)
    from tasks.pretrain import run_pretrain, torchrun_command, under_torchrun

    if config.ssl.distributed.enabled and not under_torchrun():
        import subprocess

        typer.echo(f"pretrain {stage}: {config.ssl.distributed.world_size} processes through torchrun")
        code = subprocess.call(torchrun_command(stage, params, config.ssl.distributed))
        if code:
            raise typer.Exit(code)
        return
    summary = run_pretrain(stage, config)
    if os.environ.get("RANK", "0") != "0":
        return  # rank 0 reports for the stage
    typer.echo(
        f"pretrain {stage}: {summary['epochs']} epochs, final loss {summary.get('loss_total', float('nan')):.4f}"
    )


@app.command()
def export(
    stage: Annotated[str, typer.Option(help="Continual stage name from params continual.stages.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Select and store the replay buffer of a finished stage (latents only for latent replay)."""
    config = _checked_config(params)
    from tasks.export import run_export

    summary = run_export(stage, config)
    typer.echo(
        f"export {stage}: {summary['kind']} buffer, {summary['selected']} new / {summary['buffer_samples']} total "
        f"samples, {summary['buffer_bytes']:,} bytes"
    )


@app.command()
def audit(
    stage: Annotated[str, typer.Option(help="Continual stage name: audits the rows it added to data/buffers/<stage>.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Attack a stage's replay buffer with the shared model; write the figures to data/privacy/<stage>.json."""
    config = _checked_config(params)
    from tasks.privacy_audit import run_privacy_audit, summary_line

    typer.echo(summary_line(run_privacy_audit(stage, config)))


@app.command()
def gate(
    stage: Annotated[str, typer.Option(help="Continual stage name: decides on data/privacy/<stage>.json.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Apply privacy.gate to a stage's audit: write its verdict and, for a buffer it lets through, its clearance."""
    config = _checked_config(params)
    from tasks.privacy_gate import run_privacy_gate, summary_line

    typer.echo(summary_line(run_privacy_gate(stage, config)))


@app.command("eval-inputs")
def eval_inputs(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Write data/eval/inputs.json: the digests of the windowed folders evaluation reads (what evaluate depends on)."""
    config = _checked_config(params)
    from tasks.eval_inputs import manifest_path, run_eval_inputs

    manifest = run_eval_inputs(config)
    files = sum(len(entry["files"]) for entry in manifest.values())
    typer.echo(f"eval-inputs: {len(manifest)} inputs, {files} files -> {manifest_path()}")


@app.command()
def evaluate(
    stage: Annotated[str, typer.Option(help="Continual stage name, or 'init' for the random encoder.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Evaluate one stage's frozen encoder: label-free forgetting and downstream probes (one R row)."""
    config = _checked_config(params)
    from tasks.evaluate import run_evaluate

    row = run_evaluate(stage, config)
    typer.echo(f"evaluate {stage}: {len(row['recon'])} label-free columns, probes {sorted(row['probes'])}")


@app.command()
def report(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """R matrices, BWT/FWT, plots and the MLflow model registration from every stage's evaluation."""
    config = _checked_config(params)
    from tasks.report import run_report

    summary = run_report(config)
    typer.echo(f"report: stages {summary['stages']}, tasks {summary['tasks']} -> {SUMMARY}")


@app.command()
def compare(
    config: Annotated[
        str, typer.Option(help="Block of params compare.configs to run (default, gpu, tiny...).")
    ] = "default",
    collect_only: Annotated[bool, typer.Option(help="Only collect finished experiments into reports/.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Experiments side by side (default: the config's `jobs`, else 1), cores shared."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Every strategy and ablation x seeds as queued DVC experiments -> reports/compare.md and plots."""
    loaded = _checked_params(params)
    from cssl_core.config.project import compare_problems
    from flows.compare import run_compare

    problems = [] if collect_only else compare_problems(loaded, only=config, source=str(params))
    if problems:  # before anything is queued: each experiment would fail at its first stage
        raise problems[0]
    path = run_compare(Path.cwd(), loaded, config, collect_only=collect_only, jobs=jobs)
    typer.echo(f"compare: wrote {path}")


@app.command()
def summary() -> None:
    """Print the headline figures of the last run: data accounting, training, forgetting, probes."""
    report_path = SUMMARY_METRICS
    if not report_path.exists():
        raise CliError(f"{report_path} not found: run the pipeline first (cssl repro)")
    report = _read_json(report_path, "rebuild it with `dvc repro report`")
    for summary_path in sorted(INTERIM.glob("*/summary.json")):
        counts = _read_json(summary_path, f"rebuild it with `dvc repro ingest@{summary_path.parent.name}`")
        status = counts["files"]["by_status"]
        typer.echo(
            f"ingest {summary_path.parent.name}: {counts['series']} series, {counts['slices']} slices; "
            f"{counts['files']['total']} files: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        )
    from cssl_core.evaluation.continual import LABEL_FREE_FAMILIES
    from cssl_core.reporting.tree import ordered_names

    stages, tasks = ordered_names(report, "stages"), ordered_names(report, "tasks")
    typer.echo(f"strategy {report['strategy']}, stages {stages}, cost {report['cost']}")

    def fmt(value):
        return "  n/a " if value is None else f"{value:6.3f}"

    for family in [f for f in LABEL_FREE_FAMILIES if f in report]:
        typer.echo(f"{family} R (rows: after stage; columns: held-out slices of stage):")
        for stage, row in report[family]["R"].items():
            typer.echo(f"  {stage:>4} " + " ".join(fmt(row.get(col)) for col in stages))
        typer.echo(f"  bwt {fmt(report[family]['bwt'])}  average final {fmt(report[family]['average_final'])}")
    for key in [k for k in report if "@" in k and not k.startswith("pixels")]:
        last = report[key]["R"][stages[-1]]
        typer.echo(f"{key} AUC, last stage: " + ", ".join(f"{t} {fmt(last.get(t))}" for t in tasks))
    pixels = report.get("pixels@1.0", {}).get("per_task", {})
    if pixels:
        typer.echo("raw-pixel reference AUC: " + ", ".join(f"{t} {fmt(v)}" for t, v in pixels.items()))


@app.command()
def dag(params: OptionalParams = None) -> None:
    """Print the pipeline's stages in the order dvc.yaml defines (as the Prefect flow runs them)."""
    _check_params_if_present(params)
    from flows.dag import stage_order

    for stage in stage_order(Path.cwd()):
        typer.echo(f"{stage.name}  <- {', '.join(stage.upstream) or '-'}")


@app.command()
def repro(
    targets: Annotated[list[str] | None, typer.Argument(help="Stages to reproduce (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Re-run stages even if unchanged.")] = False,
    params: OptionalParams = None,
) -> None:
    """`dvc repro` under one MLflow parent run, so the stage runs of one execution group together."""
    _check_params_if_present(params)
    from flows.driver import repro_with_parent_run

    raise typer.Exit(code=repro_with_parent_run(Path.cwd(), targets or [], force=force))


@flow_app.command("run")
def flow_run(
    retries: Annotated[int, typer.Option(help="Retries per stage task.")] = 1,
    force: Annotated[bool, typer.Option(help="Re-run stages even if unchanged.")] = False,
    runner: Annotated[
        str, typer.Option(help="sequential (one stage at a time) or dask (independent stages side by side).")
    ] = "sequential",
    workers: Annotated[int, typer.Option(help="With --runner dask: stages run at once.")] = 2,
    params: OptionalParams = None,
) -> None:
    """Run the pipeline once as a Prefect flow (ephemeral API unless PREFECT_API_URL is set)."""
    _check_params_if_present(params)
    from flows.pipeline import run_pipeline

    result = run_pipeline(project_dir=str(Path.cwd()), retries=retries, force=force, runner=runner, workers=workers)
    for name, state in result.items():
        typer.echo(f"{state:>10}  {name}")
    failed = [name for name, state in result.items() if state != "succeeded"]
    raise typer.Exit(code=1 if failed else 0)


@flow_app.command("serve")
def flow_serve(
    cron: Annotated[str, typer.Option(help="Cron schedule, e.g. '0 2 * * *' for 02:00 every night.")] = "0 2 * * *",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "cssl-nightly",
) -> None:
    """Serve a scheduled deployment against a Prefect server (`prefect server start`); Ctrl-C stops it."""
    from flows.pipeline import serve_pipeline

    serve_pipeline(project_dir=str(Path.cwd()), cron=cron, name=name)


@flow_app.command("deploy")
def flow_deploy(
    pool: Annotated[str, typer.Option(help="Process work pool to deploy to (created when missing).")],
    cron: Annotated[str, typer.Option(help="Cron schedule, e.g. '0 2 * * *' for 02:00 every night.")] = "0 2 * * *",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "cssl-nightly",
    params: OptionalParams = None,
) -> None:
    """Deploy the scheduled pipeline to a Prefect work pool; `prefect worker start --pool NAME` then runs it.

    Needs PREFECT_API_URL (a `prefect server start`). Unlike `flow serve`, nothing stays in the foreground:
    the server keeps the schedule and any worker polling the pool (restartable, on this machine) runs it.
    """
    _check_params_if_present(params)
    from flows.pipeline import deploy_pipeline

    deployment_id = deploy_pipeline(project_dir=str(Path.cwd()), pool=pool, cron=cron, name=name)
    typer.echo(f"deployed cssl-pipeline/{name} ({deployment_id}) to work pool {pool!r}, schedule '{cron}'")
    typer.echo(f"run it with a worker: prefect worker start --pool {pool}")


RemoteOption = Annotated[
    str | None, typer.Option("--remote", help="DVC remote to use (default: the project's default remote).")
]


def _site_artifacts(stage: str, params: Path) -> tuple[Path, Any]:
    """The project root (DVC's) and the stage's allowed artifacts, after params.yaml is checked as a whole."""
    from cssl_core.project import find_project_root, not_a_project_text
    from flows.site import stage_artifacts

    root = find_project_root()
    if root is None:
        raise CliError(f"{not_a_project_text()}; run `cssl site` in the project folder")
    config = _checked_config(root / params if not params.is_absolute() else params)
    return root, stage_artifacts(config.continual.paths(stage))


@site_app.command("push")
def site_push(
    stage: Annotated[str, typer.Option(help="Continual stage whose model, buffer and audit report to share.")],
    targets: Annotated[
        list[Path] | None,
        typer.Argument(help="More artifacts of other stages (data/models/<s>, data/buffers/<s>); checked the same."),
    ] = None,
    remote: RemoteOption = None,
    allow_image_buffer: Annotated[
        bool, typer.Option("--allow-image-buffer", help="Let an image replay buffer (raw slices) leave the site.")
    ] = False,
    allow_leaking_buffer: Annotated[
        bool, typer.Option("--allow-leaking-buffer", help="Let a buffer that failed its privacy audit leave the site.")
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Push exactly data/models/<stage> and data/buffers/<stage> to the shared DVC remote; refuse anything else.

    data/raw, data/interim, data/windowed and data/quality never leave the site, nor does an image buffer without
    --allow-image-buffer, nor a buffer whose audit failed (whatever privacy.gate.mode says) without
    --allow-leaking-buffer. The audit report data/privacy/<stage>.json and dvc.lock go by git (printed as a
    reminder).
    """
    from flows.site import LEAK_FLAG, plan_push, push

    root, artifacts = _site_artifacts(stage, params)
    plan = plan_push(root, artifacts, targets or [], allow_image_buffer=allow_image_buffer,
                     allow_leaking_buffer=allow_leaking_buffer)  # fmt: skip
    for line in plan.leaking:
        typer.echo(f"warning: {line}; pushed anyway ({LEAK_FLAG})", err=True)
    uploaded = push(root, plan, remote=remote)
    typer.echo(
        f"site push {stage}: {', '.join(map(str, plan.dvc_targets))} -> DVC remote "
        f"{remote or '(default)'} ({uploaded} objects uploaded)"
    )
    typer.echo(
        f"now commit and push with git: git add dvc.lock {' '.join(map(str, plan.git_files))} && "
        f"git commit -m 'stage {stage}' && git push"
    )


@site_app.command("pull")
def site_pull(
    stage: Annotated[str, typer.Option(help="Continual stage whose model and buffer to fetch (another site's).")],
    remote: RemoteOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Pull exactly data/models/<stage> and data/buffers/<stage>, the versions dvc.lock (from git) names.

    Run `git pull` first: dvc.lock and data/privacy/<stage>.json come from the other site through git.
    """
    from flows.site import missing_git_files, pull

    root, artifacts = _site_artifacts(stage, params)
    missing = missing_git_files(root, artifacts)
    if missing:
        raise CliError(
            f"{missing[0]}: missing; `git pull` the other site's commit of stage {stage} first "
            "(it carries dvc.lock and the audit report)"
        )
    fetched = pull(root, artifacts, remote=remote)
    typer.echo(f"site pull {stage}: {', '.join(map(str, artifacts.dvc_targets))} ({fetched} objects fetched)")


def main() -> None:
    """The `cssl` entry point: the one place where failures become an exit code and what the user reads.

    Expected failures (flows.errors) print one `error:` line and exit 2; `--debug`/CSSL_DEBUG=1 adds their
    traceback. Anything else is a bug: its traceback, then an `internal error:` line, exit 1.
    """
    try:
        app(prog_name="cssl")
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (every output is written atomically)
        if debug_requested():
            traceback.print_exc()
        typer.echo("interrupted (Ctrl-C): no partial output is used later; run the same command again", err=True)
        sys.exit(130)
    except Exception as error:  # SystemExit passes through untouched
        expected = is_expected(error)
        if debug_requested() or not expected:
            traceback.print_exc()
        typer.echo(f"error: {message(error)}" if expected else internal_error_line(error), err=True)
        sys.exit(EXIT_EXPECTED if expected else 1)


if __name__ == "__main__":
    sys.exit(main())
