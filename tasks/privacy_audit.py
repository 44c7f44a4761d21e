"""Stage `audit@<stage>`: attack the replay buffer a stage exports, before anything downstream uses it.

A buffer is shared with the next stage together with the stage's model, so the question is what those two
give away (docs/privacy.md). The attacker side below reads only data/buffers/<stage>, data/models/<stage>
and the windowed slices of `privacy.attacker_cohort` in the stage's window (a cohort whose patients are in
no buffer). The victims' own slices are read by cssl_core/privacy/victims.py alone, to score the attacks.

Only the rows this stage added are audited: rows of earlier stages are carried forward unchanged and were
audited by the earlier stage's audit. A seeded sample of `privacy.max_rows` rows, with the bounded attack
steps of `privacy.attack`, keeps the cost small and independent of the buffer size.

Outputs: data/privacy/<stage>.json (the figures, deterministic for a seed: a DVC metric),
data/privacy/<stage>.png (true slices beside each attack's reconstruction), the wall time in
data/metrics/audit-<stage>.json, and an MLflow run with both files. The verdict is the next stage's
(gate@<stage>, tasks/privacy_gate.py): thresholds are not attack inputs, so editing one re-runs no attack.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.layout import METRICS, PRIVACY, metrics_path, privacy_figure, privacy_report, windowed_dir
from cssl_core.models.io import load_model
from cssl_core.privacy.gate import strongest_ssim
from cssl_core.replay.directory import read_buffer
from cssl_core.replay.rows import finding_labels
from tasks import tracking

FIGURE_ROWS = 4


def attacker_data(config: ProjectConfig, stage: str, cohort: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The attacker's own slices (the attacker cohort in the audited stage's window) and their findings.

    Refuses a cohort that any stage up to this one trained on: its patients could be in the buffer. The config
    check refuses such a privacy.attacker_cohort already; the attacker side keeps its own guard, as it reads
    the slices.
    """
    from cssl_core.privacy.common import as_slices

    paths = config.continual.paths(stage)
    trained = {config.continual.stages[name].cohort for name in config.continual.chain(stage)}
    if cohort in trained:
        raise ValueError(
            f"params.yaml privacy.attacker_cohort {cohort!r} is trained on by stage {stage} or earlier, so its "
            "patients can be in the buffer: name a cohort no stage up to this one trains on (e.g. nsclc)"
        )
    directory = windowed_dir(cohort, paths.window)
    if not (directory / "slices.npy").is_file():
        raise FileNotFoundError(
            f"{directory}/slices.npy not found: privacy.attacker_cohort {cohort!r} must be in ingest.cohorts "
            f"and window.apply must hold {paths.window!r}"
        )
    slices = np.load(directory / "slices.npy", mmap_mode="r")
    index = pd.read_parquet(directory / "index.parquet")
    return as_slices(np.asarray(slices), "attacker slices"), finding_labels(index, np.arange(len(index)))


def attacker_view(model, mode):
    """The shared model composed with the buffer's public privacy transform (the attacker knows the mode)."""
    from cssl_core.privacy.common import ReleasedEncoder

    return ReleasedEncoder(model, token_pool=mode.token_pool, noise_sd=mode.attacker_noise_sd)


def privacy_spend(ledger: list[dict[str, Any]], stage: str) -> dict[str, Any] | None:
    """What the buffer's formal releases spent (None when none was formal): this stage's (epsilon, delta) and all
    stages' so far composed by the accountant at the sum of their deltas (a patient may be in several cohorts)."""
    if not ledger:
        return None
    from cssl_core.replay.modes.dp import ACCOUNTANT, composed_epsilon

    mine = [entry for entry in ledger if entry.get("stage") == stage]
    total_delta = float(sum(entry["delta"] for entry in ledger))
    return {
        "unit": "patient",
        "stage_epsilon": mine[-1]["epsilon"] if mine else None,
        "stage_delta": mine[-1]["delta"] if mine else None,
        "total_epsilon": round(composed_epsilon(ledger, total_delta), 4),
        "total_delta": total_delta,
        "stages": [entry.get("stage") for entry in ledger],
        "accountant": ACCOUNTANT,
    }


def _common_finding(attacker: dict[str, np.ndarray], victims: dict[str, np.ndarray]) -> str | None:
    """The first finding both sides know with both classes (an AUC needs both), or None."""
    for name in sorted(set(attacker) & set(victims)):
        if {0, 1} <= set(attacker[name].tolist()) and {0, 1} <= set(victims[name].tolist()):
            return name
    return None


def _no_buffer_report(stage: str) -> dict[str, Any]:
    return {"buffer": stage, "kind": "none", "audited": False,
            "note": "this strategy keeps no replay buffer: nothing to audit"}


def run_privacy_audit(stage: str, config: ProjectConfig) -> dict[str, Any]:
    """Audit this stage's rows of data/buffers/<stage>, write the report and figure, and log them."""
    from cssl_core.privacy import draw_reconstructions, run_audit
    from cssl_core.privacy import victims as scoring
    from cssl_core.privacy.figure import draw_note
    from cssl_core.replay.buffer import ReplayBuffer

    paths, privacy = config.continual.paths(stage), config.privacy
    attack = privacy.attack  # AuditConfig, with privacy.seed and privacy.max_rows in it
    output, figure = privacy_report(stage), privacy_figure(stage)
    buffer = read_buffer(paths.buffer)
    for directory in (PRIVACY, METRICS):
        directory.mkdir(parents=True, exist_ok=True)
    run_params = {"stage": stage, "attacker_cohort": privacy.attacker_cohort, "queries": privacy.queries,
                  **attack.to_dict()}
    tags = {"cssl.cohort": paths.cohort, "cssl.window": paths.window, "cssl.strategy": config.ssl.strategy}
    with tracking.stage_run(f"audit@{stage}", run_params, tags=tags):
        started = time.perf_counter()
        mine = np.flatnonzero(buffer.stage == stage) if buffer is not None else np.zeros(0, np.int64)
        if buffer is None or not mine.size:
            report = _no_buffer_report(stage)
            draw_note(figure, f"buffer {stage}: {report['note']}")
            write_json(output, report)
            _write_seconds(stage, time.perf_counter() - started)
            return report
        # attacker side: the buffer's rows (no labels), the shared model, the attacker cohort
        clusters = {} if not buffer.holds_clusters else {"spread": np.asarray(buffer.spread[mine]),
                                                          "counts": np.asarray(buffer.counts[mine])}  # fmt: skip
        rows = ReplayBuffer(buffer.kind, np.asarray(buffer.data[mine]), buffer.stage[mine], buffer.window[mine],
                            **clusters)  # fmt: skip
        released = load_model(paths.model)[0].eval()  # travels with the buffer: its loss test is audited too
        model = released if buffer.kind == "latent" else None
        mode = config.replay.privacy if buffer.kind == "latent" else None
        shared = None if model is None else attacker_view(model, mode)
        attacker, attacker_labels = attacker_data(config, stage, privacy.attacker_cohort)
        # scoring side: the victims' true slices, findings and membership queries
        victims = scoring.victims(stage, config, rows.data, model, privacy.queries, attack.seed)
        finding = _common_finding(attacker_labels, victims.labels)
        result = run_audit(
            shared,
            rows,
            victims.truth,
            attacker,
            config=attack,
            attacker_labels=None if finding is None else attacker_labels[finding],
            truth_labels=None if finding is None else victims.labels[finding],
            queries=victims.queries,
            query_is_member=victims.query_is_member,
            query_patient=victims.query_patient,
            truth_members=victims.members,
            released_model=released,
        )
        spend = privacy_spend(buffer.ledger, stage)
        report = {
            "buffer": stage,
            "kind": buffer.kind,
            "mode": "image" if mode is None else mode.mode,
            "form": "clusters" if buffer.holds_clusters else "rows",
            "audited": True,
            "labels_in_buffer": sorted(buffer.labels),  # replay.keep_labels: findings stored beside the rows
            "attacker": {"cohort": privacy.attacker_cohort, "window": paths.window, "n_slices": len(attacker)},
            # the membership tests' non-members: the stage's patients held out of training (ssl.audit_fraction)
            "non_members": victims.held_out,
            "finding_label": finding,
            "config": attack.to_dict(),
            "figures": result.figures,
            "figure": str(figure),
            **({"dp": spend} if spend else {}),
        }
        draw_reconstructions(figure, result.truth, result.reconstructions, max_rows=FIGURE_ROWS)
        write_json(output, _jsonable(report))
        seconds = time.perf_counter() - started
        _write_seconds(stage, seconds, result.seconds)
        _log(report, seconds, figure, output)
        if report["labels_in_buffer"]:
            print(f"warning: buffer {stage} stores finding labels {report['labels_in_buffer']} "
                  "(replay.keep_labels: true); replay does not need them", flush=True)
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_seconds(stage: str, seconds: float, per_attack: dict[str, float] | None = None) -> None:
    """Wall time goes to a record of its own, so the report stays the same for the same seed."""
    path = metrics_path("audit", stage)
    write_json(path, {"seconds": round(seconds, 3), "attack_seconds": per_attack or {}})


def _log(report: dict[str, Any], seconds: float, figure: Path, output: Path) -> None:
    figures = report["figures"]
    numbers = {k: v for k, v in figures.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    numbers.update({"seconds": seconds,
                    "labels_in_buffer": len(report["labels_in_buffer"])})
    if report.get("dp"):  # the accountant's figures beside the attacks' (a formal mode)
        spend = report["dp"]
        figures_dp = {"dp_stage_epsilon": spend["stage_epsilon"], "dp_total_epsilon": spend["total_epsilon"]}
        numbers.update({k: v for k, v in figures_dp.items() if v is not None})
    tracking.log_metrics(numbers)
    tracking.log_artifact(figure, "figures")
    tracking.log_artifact(output)


def summary_line(report: dict[str, Any]) -> str:
    """The CLI's one line: what was audited and the figures the gate reads (the verdict is gate@<stage>'s)."""
    if not report.get("audited"):
        return f"audit {report['buffer']}: {report.get('note', 'nothing audited')}"
    figures = report["figures"]
    attacker, ssim = strongest_ssim(figures)
    shown = [f"{attacker} SSIM p95 {ssim:.3f} (mean-slice guess {figures.get('baseline_ssim_p95', float('nan')):.3f})"]
    shown += [f"{name} {figures[key]:.3f}" for key, name in (("reid_auc", "re-identification AUC"),
              ("membership_auc", "patient membership AUC"), ("model_membership_auc", "model-loss membership AUC"),
              ("specificity_rate", "specificity")) if isinstance(figures.get(key), int | float)]  # fmt: skip
    dp = report.get("dp")
    if dp and dp["stage_epsilon"] is not None:
        shown.append(f"dp epsilon {dp['stage_epsilon']:.2f} this stage / {dp['total_epsilon']:.2f} in total at delta "
                     f"{dp['total_delta']:.1e} (unit: patient)")  # fmt: skip
    rows = f"{figures['n_rows']}/{figures['n_buffer']} rows"
    return f"audit {report['buffer']}: {rows}, {', '.join(shown)} -> {report['figure']}"
