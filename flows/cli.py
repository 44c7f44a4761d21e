"""The `cssl` command: one sub-command per pipeline step, plus the drivers that run the whole DAG.

Heavy libraries (torch, MONAI, Great Expectations, MLflow, Prefect, DVC) are imported inside the
commands, so `cssl --help` answers at once. Expected failures (bad input, failed quality gate, bad
params) end with one readable `error:` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Continual SSL on multi-window chest CT: pipeline steps and drivers.",
)
flow_app = typer.Typer(no_args_is_help=True, help="Run or schedule the pipeline as a Prefect flow.")
app.add_typer(
    flow_app, name="flow", help="Run or schedule the pipeline as a Prefect flow (reads the DAG from dvc.yaml)."
)

ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, KeyError, ValueError, NotADirectoryError)


def _fail(error: BaseException) -> None:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from cssl_core.ingest.pipeline import IngestInputError
    from tasks.quality import QualityGateError

    return (*EXPECTED_ERRORS, IngestInputError, QualityGateError)


def _run(action):
    try:
        return action()
    except _expected_errors() as error:  # noqa: B030 - tuple built lazily
        _fail(error)


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the cohort(s).")],
    cohort: Annotated[
        str | None, typer.Option(help="One cohort of params data.demo; all of them (one subfolder each) when omitted.")
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Write the built-in demo data (synthetic phantom DICOM and the real NSCLC series) as DICOM."""
    from tasks.demo_data import run_demo_data
    from tasks.params import load_params

    def action():
        loaded = load_params(params)
        names = [cohort] if cohort else sorted(loaded.get("data", {}).get("demo", {}))
        for name in names:
            target = out_dir if cohort else out_dir / name
            summary = run_demo_data(target, name, loaded)
            typer.echo(f"demo-data {name}: {summary.get('files', summary)} files -> {target}")

    _run(action)


@app.command()
def ingest(
    input: Annotated[Path, typer.Option("--input", help="Folder of DICOM files (searched recursively).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for volumes, manifest and accounting.")],
    workers: Annotated[int, typer.Option(help="Worker processes over series.")] = 1,
    volume_format: Annotated[str, typer.Option(help="nii.gz (compressed) or nii.")] = "nii.gz",
) -> None:
    """Ingest DICOM: HU volumes (NIfTI), manifest, per-file accounting with quarantine reasons."""
    from tasks.ingest import run_ingest

    def action():
        if volume_format not in ("nii.gz", "nii"):
            raise ValueError(f"--volume-format must be nii.gz or nii, got {volume_format!r}")
        summary = run_ingest(input, output, workers=workers, compress=volume_format == "nii.gz")
        typer.echo(
            f"ingest: {summary.get('n_series')} series, {summary.get('n_slices')} slices; files: "
            f"{summary.get('n_ingested')} ingested, {summary.get('n_quarantined')} quarantined, "
            f"{summary.get('n_ignored')} ignored -> {output}"
        )

    _run(action)


@app.command()
def window(
    cohort: Annotated[str, typer.Option(help="Cohort name (data/interim/<cohort>).")],
    window_name: Annotated[str, typer.Option("--window", help="Window preset name from params window.presets.")],
    interim: Annotated[Path, typer.Option(help="Ingested data root.")] = Path("data/interim"),
    output: Annotated[Path, typer.Option(help="Windowed data root.")] = Path("data/windowed"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Apply a CT window: memory-mappable 2-D training slices plus an index table."""
    from tasks.params import load_params
    from tasks.window import run_window

    def action():
        meta = run_window(
            interim / cohort, output / f"{cohort}-{window_name}", cohort, window_name, load_params(params)
        )
        typer.echo(f"window {cohort}-{window_name}: {meta['n_slices']} slices {meta['size']}px {meta['dtype']}")

    _run(action)


@app.command()
def quality(
    cohort: Annotated[str, typer.Option(help="Cohort name.")],
    window_name: Annotated[str, typer.Option("--window", help="Window preset name.")],
    interim: Annotated[Path, typer.Option(help="Ingested data root.")] = Path("data/interim"),
    windowed: Annotated[Path, typer.Option(help="Windowed data root.")] = Path("data/windowed"),
    output: Annotated[Path, typer.Option(help="Quality reports root.")] = Path("data/quality"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Great Expectations gates on the manifest and the windowed slices; hard failures exit non-zero."""
    from tasks.params import load_params
    from tasks.quality import run_quality

    def action():
        report = run_quality(
            interim / cohort / "manifest.parquet",
            windowed / f"{cohort}-{window_name}",
            output / f"{cohort}-{window_name}.json",
            load_params(params)["quality"],
            stage_name=f"quality@{cohort}-{window_name}",
        )
        typer.echo(
            f"quality {cohort}-{window_name}: {report['n_passed']}/{report['n_expectations']} expectations passed"
        )

    _run(action)


@app.command("init-model")
def init_model(params: ParamsOption = Path("params.yaml")) -> None:
    """Write the seeded random encoder (data/models/init) every continual schedule starts from."""
    from tasks.init_model import run_init
    from tasks.params import load_params

    def action():
        summary = run_init(load_params(params))
        typer.echo(f"init: {summary['preset']} MAE with {summary['parameters']:,} parameters -> data/models/init")

    _run(action)


@app.command()
def pretrain(
    stage: Annotated[str, typer.Option(help="Continual stage name from params continual.stages.")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Train one continual SSL stage (resumes from its last checkpoint after a crash)."""
    from tasks.params import load_params
    from tasks.pretrain import run_pretrain

    def action():
        summary = run_pretrain(stage, load_params(params))
        typer.echo(
            f"pretrain {stage}: {summary['epochs']} epochs, final loss {summary.get('loss_total', float('nan')):.4f}"
        )

    _run(action)


@app.command()
def export(
    stage: Annotated[str, typer.Option(help="Continual stage name from params continual.stages.")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Select and store the replay buffer of a finished stage (latents only for latent replay)."""
    from tasks.export import run_export
    from tasks.params import load_params

    def action():
        summary = run_export(stage, load_params(params))
        typer.echo(
            f"export {stage}: {summary['kind']} buffer, {summary['selected']} new / {summary['buffer_samples']} total "
            f"samples, {summary['buffer_bytes']:,} bytes"
        )

    _run(action)


@app.command()
def evaluate(
    stage: Annotated[str, typer.Option(help="Continual stage name, or 'init' for the random encoder.")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Evaluate one stage's frozen encoder: label-free forgetting and downstream probes (one R row)."""
    from tasks.evaluate import run_evaluate
    from tasks.params import load_params

    def action():
        row = run_evaluate(stage, load_params(params))
        typer.echo(f"evaluate {stage}: {len(row['recon'])} label-free columns, probes {sorted(row['probes'])}")

    _run(action)


@app.command()
def report(params: ParamsOption = Path("params.yaml")) -> None:
    """R matrices, BWT/FWT, plots and the MLflow model registration from every stage's evaluation."""
    from tasks.params import load_params
    from tasks.report import run_report

    def action():
        summary = run_report(load_params(params))
        typer.echo(f"report: stages {summary['stages']}, tasks {summary['tasks']} -> data/summary")

    _run(action)


@app.command()
def compare(
    config: Annotated[
        str, typer.Option(help="Block of params compare.configs to run (default, gpu, tiny...).")
    ] = "default",
    collect_only: Annotated[bool, typer.Option(help="Only collect finished experiments into reports/.")] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Every strategy and ablation x seeds as queued DVC experiments -> reports/compare.md and plots."""
    from flows.compare import run_compare
    from tasks.params import load_params

    def action():
        path = run_compare(Path.cwd(), load_params(params), config, collect_only=collect_only)
        typer.echo(f"compare: wrote {path}")

    _run(action)


@app.command()
def summary() -> None:
    """Print the headline figures of the last run: data accounting, training, forgetting, probes."""
    import json

    report_path = Path("data/summary/metrics.json")
    if not report_path.exists():
        _fail(FileNotFoundError(f"{report_path} not found: run the pipeline first (cssl repro)"))
    report = json.loads(report_path.read_text())
    for summary_path in sorted(Path("data/interim").glob("*/summary.json")):
        counts = json.loads(summary_path.read_text())
        status = counts["files"]["by_status"]
        typer.echo(
            f"ingest {summary_path.parent.name}: {counts['series']} series, {counts['slices']} slices; "
            f"{counts['files']['total']} files: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        )
    from tasks.report import ordered_names

    stages, tasks = ordered_names(report, "stages"), ordered_names(report, "tasks")
    typer.echo(f"strategy {report['strategy']}, stages {stages}, cost {report['cost']}")

    def fmt(value):
        return "  n/a " if value is None else f"{value:6.3f}"

    for family in ("recon", "cka"):
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
def dag() -> None:
    """Print the pipeline's stages in the order dvc.yaml defines (as the Prefect flow runs them)."""
    from flows.dag import stage_order

    for stage in stage_order(Path.cwd()):
        typer.echo(f"{stage.name}  <- {', '.join(stage.upstream) or '-'}")


@app.command()
def repro(
    targets: Annotated[list[str] | None, typer.Argument(help="Stages to reproduce (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Re-run stages even if unchanged.")] = False,
) -> None:
    """`dvc repro` under one MLflow parent run, so the stage runs of one execution group together."""
    from flows.driver import repro_with_parent_run

    raise typer.Exit(code=repro_with_parent_run(Path.cwd(), targets or [], force=force))


@flow_app.command("run")
def flow_run(
    retries: Annotated[int, typer.Option(help="Retries per stage task.")] = 1,
    force: Annotated[bool, typer.Option(help="Re-run stages even if unchanged.")] = False,
) -> None:
    """Run the pipeline once as a Prefect flow (ephemeral API unless PREFECT_API_URL is set)."""
    from flows.pipeline import run_pipeline

    result = run_pipeline(project_dir=str(Path.cwd()), retries=retries, force=force)
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


def main() -> None:
    app(prog_name="cssl")


if __name__ == "__main__":
    sys.exit(main())
