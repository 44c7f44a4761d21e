"""reports/compare.md: tables over strategies x seeds, plus plots, from the experiments' report metrics.

Every number is mean +- sd over the seeds that finished; a variant with failed seeds says so in its row.
Figures come from what each experiment wrote: its metrics (R matrices), its per-epoch loss histories and
its final replay buffer, read through a `RunFiles` the caller passes (`cssl compare` reads them back through DVC:
flows/experiment_files.py). Library code: it reads no pipeline files itself.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cssl_core.config.compare import config_entry
from cssl_core.evaluation.probe_names import PROBE_NAMES as PROBES
from cssl_core.layout import metrics_path, privacy_report
from cssl_core.privacy.gate import check, strongest_ssim
from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.reporting.comparison_sanity import NO_FLAGS, Flags, flags, mark, plasticity_section, sanity_block
from cssl_core.reporting.figures import (
    LOSS_COLUMNS,
    MIN_EMBEDDED_ITEMS,
    draw_buffer_embedding,
    figure,
    heatmap,
    parse_history,
    stages_back_to_back,
)
from cssl_core.reporting.stats import fmt as _fmt
from cssl_core.reporting.stats import mean as _mean
from cssl_core.reporting.stats import metric as _get
from cssl_core.reporting.stats import nanmean as _nanmean
from cssl_core.reporting.stats import num as _num
from cssl_core.reporting.stats import sd as _sd
from cssl_core.reporting.stats import table as _table
from cssl_core.reporting.tree import matrix_from_tree, ordered_names

HEADLINE = "linear@1.0"

Seeds = list[tuple[int, dict[str, Any] | None]]  # (seed, metrics or None when that run failed)

# The privacy goal of a latent buffer (stated in the report): its strongest reconstruction no closer to the
# true slices than guessing the attacker's mean slice (plus a margin), membership near chance, and still at
# most half of finetune's stage-1 forgetting (the buffer must keep doing its job).
GOAL_SSIM_MARGIN = 0.05
GOAL_MAX_REID_AUC = 0.6
GOAL_FORGETTING_SHARE = 0.5
# the gate at the goal's thresholds, applied to every seed's release as gate@ applies it in the pipeline
GOAL_GATE = {"max_ssim_over_baseline": GOAL_SSIM_MARGIN, "max_ssim_p95": None, "max_reid_auc": GOAL_MAX_REID_AUC,
             "max_membership_auc": GOAL_MAX_REID_AUC, "mode": "warn"}  # fmt: skip
REFERENCE_VARIANT = "finetune"  # the no-buffer strategy the forgetting of the goal is measured against
PRIVACY_FIGURE = "privacy_utility.png"


class RunFiles(Protocol):
    """What the report needs from a finished experiment beyond its metrics (flows.experiment_files.ExperimentFiles
    reads them through DVC; tests pass dicts)."""

    def text(self, name: str, path: str) -> str | None: ...

    def buffer(self, name: str, stage: str) -> ReplayBuffer | None: ...


def _final_row(metrics: dict[str, Any], key: str, column: int) -> float:
    matrix = matrix_from_tree(metrics, key)
    return float(matrix[-1, column]) if matrix is not None else float("nan")


def main_table(variants: dict[str, Seeds], tasks: list[str], marks: Flags = NO_FLAGS) -> list[str]:
    """One row per strategy; a headline AUC cell or average the sanity block found uninformative (`marks`:
    pretraining does not beat random there) is marked."""
    header = (
        ["strategy", "keeps raw images", "seeds ok/failed"]
        + [f"{t} AUC" for t in tasks]
        + [
            "avg AUC",
            "BWT AUC",
            "FWT AUC",
            "recon final",
            "recon forgetting",
            "recon forgetting (own decoder)",
            "CKA BWT",
            "steps",
            "train s",
            "buffer bytes",
        ]
    )
    rows = []
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        failed = [s for s, m in seeds if not m]
        if not ok:
            rows.append([variant, "?", f"0/{len(failed)} (failed: seeds {failed})"] + ["n/a"] * (len(header) - 3))
            continue
        rows.append(
            [
                variant,
                str(ok[0].get("cost", {}).get("keeps_raw_images", "?")).lower(),
                f"{len(ok)}/{len(failed)}" + (f" (failed: seeds {failed})" if failed else ""),
                *(
                    mark(_fmt([_final_row(m, HEADLINE, j) for m in ok]), marks.task(HEADLINE, t))
                    for j, t in enumerate(tasks)
                ),
                *(
                    mark(_fmt([_get(m, HEADLINE, f) for m in ok]), marks.field(HEADLINE, f))
                    for f in ("average_final", "bwt", "fwt")
                ),
                _fmt([_get(m, "recon", "average_final") for m in ok], 4),
                _fmt([_get(m, "recon", "bwt") for m in ok], 4),
                _fmt([_get(m, "recon_own", "bwt") for m in ok], 4),
                _fmt([_get(m, "cka", "bwt") for m in ok]),
                _fmt([_get(m, "cost", "steps") for m in ok], 0),
                _fmt([_get(m, "cost", "train_seconds") for m in ok], 0),
                _fmt([_get(m, "cost", "buffer_bytes") for m in ok], 0),
            ]
        )
    return _table(header, rows)


def probe_table(
    variants: dict[str, Seeds], tasks: list[str], fraction: str = "1.0", marks: Flags = NO_FLAGS
) -> list[str]:
    """Average final AUC and BWT of every probe, with the random-encoder and raw-pixel references; a cell the
    sanity block found uninformative (`marks`) is marked."""
    probes = [p for p in PROBES if any(f"{p}@{fraction}" in m for seeds in variants.values() for _, m in seeds if m)]
    header = ["strategy"] + [f"{p} {what}" for p in probes for what in ("avg AUC", "BWT", "FWT")]
    rows = []
    every_run = [m for seeds in variants.values() for _, m in seeds if m]
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        row = [variant]
        for probe in probes:
            key = f"{probe}@{fraction}"
            row += [
                mark(_fmt([_get(m, key, f) for m in ok]), marks.field(key, f)) for f in ("average_final", "bwt", "fwt")
            ]
        rows.append(row)

    def reference(*path: str) -> str:
        # the same seed gives the same random encoder and pixels in every variant: average per run
        return _fmt([float(_nanmean([_get(m, *path, t) for t in tasks])) for m in every_run])

    random_encoder = [reference(f"{p}@{fraction}", "random_encoder") for p in probes]
    rows.append(["(random encoder)"] + [c for value in random_encoder for c in (value, "", "")])
    pixels = reference(f"pixels@{fraction}", "per_task")
    rows.append(["(raw pixels, linear)"] + [c for p in probes for c in (pixels if p == "linear" else "", "", "")])
    return _table(header, rows)


def probe_fractions(variants: dict[str, Seeds]) -> list[str]:
    """The label fractions some probe was run at ("1.0", "0.1", ...), all labels first, then descending."""
    found = {
        key.split("@", 1)[1]
        for seeds in variants.values()
        for _, m in seeds
        if m
        for key in m
        if "@" in key and key.split("@", 1)[0] in PROBES
    }
    return sorted(found, key=lambda f: -float(f))


def probe_tables(variants: dict[str, Seeds], tasks: list[str], marks: Flags = NO_FLAGS) -> list[str]:
    """probe_table at every label fraction present, each under a line naming the fraction."""
    lines: list[str] = []
    for fraction in probe_fractions(variants):
        share = "all training labels" if float(fraction) == 1.0 else f"{float(fraction):.0%} of the training patients"
        lines += [f"With {share} (`@{fraction}`):", "", *probe_table(variants, tasks, fraction, marks), ""]
    return lines


def recon_heatmaps(figures: Path, variants: dict[str, Seeds], stages: list[str]) -> None:
    for variant, seeds in variants.items():
        recon = [r for r in (matrix_from_tree(m, "recon") for _, m in seeds if m) if r is not None]
        if recon:
            mean = _nanmean(np.stack(recon), axis=0)
            heatmap(figures / f"R_recon_{variant}.png", mean, stages, stages, f"{variant}: reconstruction loss")


def auc_per_stage(path: Path, variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> None:
    """Linear AUC after each stage, one line per strategy, one panel per task."""
    with figure(path, 1, len(tasks), size=(3.2 * len(tasks), 3)) as (_, axes):
        for j, task in enumerate(tasks):
            ax = axes[0, j]
            for variant, seeds in variants.items():
                mats = [r for r in (matrix_from_tree(m, HEADLINE) for _, m in seeds if m) if r is not None]
                if mats:
                    ax.plot(stages, _nanmean(np.stack(mats), axis=0)[:, j], marker="o", label=variant)
            ax.set_title(task, fontsize=9)
            ax.set_ylim(0.3, 1.0)
            ax.set_xlabel("after stage")
        axes[0, 0].set_ylabel("linear probe AUC")
        axes[0, -1].legend(fontsize=6)


def loss_curves(path: Path, runs, files: RunFiles, stages: list[str]) -> bool:
    """Per-epoch MAE loss (training) and validation MAE, stages back to back, mean over seeds per strategy."""
    curves: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, variant, _, _ in runs:
        histories = {}
        for stage in stages:
            text = files.text(name, metrics_path("pretrain", stage, "-history.csv").as_posix())
            if text:
                histories[stage] = parse_history(text)
        if len(histories) == len(stages):
            for column in LOSS_COLUMNS:
                curves.setdefault(variant, {}).setdefault(column, []).append(stages_back_to_back(histories, column))
    if not curves:
        return False
    with figure(path, 1, len(LOSS_COLUMNS), size=(5.2 * len(LOSS_COLUMNS), 3.4)) as (_, axes):
        for k, column in enumerate(LOSS_COLUMNS):
            ax = axes[0, k]
            for variant, by_column in curves.items():
                lengths = {len(c) for c in by_column[column]}
                if len(lengths) == 1:  # seeds of one variant share the epoch schedule
                    ax.plot(
                        np.arange(1, lengths.pop() + 1), _nanmean(np.stack(by_column[column]), axis=0), label=variant
                    )
            ax.set_title(f"{column} (stages {', '.join(stages)} back to back)", fontsize=9)
            ax.set_xlabel("epoch")
        axes[0, 0].set_ylabel("loss")
        axes[0, -1].legend(fontsize=6)
    return True


def buffer_embeddings(path: Path, variants: dict[str, Seeds], files: RunFiles, last_stage: str, runs) -> bool:
    """t-SNE of the final replay buffer of each strategy that keeps one (first finished seed)."""
    first_ok = {}
    for name, variant, seed, _ in runs:
        if variant not in first_ok and any(s == seed and m for s, m in variants[variant]):
            first_ok[variant] = (name, seed)
    buffers = {}
    for variant, (name, seed) in first_ok.items():
        buffer = files.buffer(name, last_stage)
        if buffer is not None and len(buffer) >= MIN_EMBEDDED_ITEMS:
            buffers[variant] = (buffer, seed)
    if not buffers:
        return False
    ncols = min(4, len(buffers))
    nrows = math.ceil(len(buffers) / ncols)
    with figure(path, nrows, ncols, size=(4.2 * ncols, 3.8 * nrows)) as (_, axes):
        for k, (variant, (buffer, seed)) in enumerate(buffers.items()):
            draw_buffer_embedding(axes[k // ncols, k % ncols], buffer, seed, f"{variant} s{seed}")
        for k in range(len(buffers), nrows * ncols):
            axes[k // ncols, k % ncols].set_axis_off()
    return True


def stage1_forgetting(metrics: dict[str, Any]) -> float:
    """Label-free forgetting of the first stage: reconstruction loss on its held-out slices after the last
    stage minus right after it (R_recon[last, 0] - R_recon[0, 0]; > 0 = forgot). nan without the matrix."""
    matrix = matrix_from_tree(metrics, "recon")
    if matrix is None or not matrix.size:
        return float("nan")
    return float(matrix[-1, 0] - matrix[0, 0])


def _stage1_val_mae(metrics: dict[str, Any], stages: list[str]) -> float:
    """Validation MAE loss at the end of pretrain@<first stage> (its run record, merged by flows.compare)."""
    return _get(metrics, "pretrain", stages[0], "val_mae") if stages else float("nan")


def audit_figures(report: Any) -> dict[str, Any] | None:
    """The Privacy table's figures of one audit report (data/privacy/<stage>.json); None when the stage
    audited nothing (no buffer). The strongest attack is the one with the highest SSIM p95, as the gate has it."""
    if not isinstance(report, dict) or not report.get("audited"):
        return None
    figures = report.get("figures") or {}
    attacker, ssim_p95 = strongest_ssim(figures)
    verdict = check(figures, GOAL_GATE)
    labels = report.get("labels_in_buffer")  # absent when read from `dvc exp show` (it drops lists)
    return {
        "kind": str(report.get("kind") or figures.get("kind") or "?"),
        "attacker": attacker or "?",
        "ssim_p95": float("nan") if ssim_p95 is None else ssim_p95,
        "ssim_p50": _get(figures, f"{attacker}_ssim_p50"),
        "psnr_p50": _get(figures, f"{attacker}_psnr_p50"),
        "baseline_ssim_p95": _get(figures, "baseline_ssim_p95"),
        "finding_auc_recon": _get(figures, "finding_auc_recon"),
        "finding_auc_true": _get(figures, "finding_auc_true"),
        "reid_auc": _get(figures, "reid_auc"),
        "membership_auc": _get(figures, "membership_auc"),
        "labels": list(labels) if isinstance(labels, list | tuple) else None,
        # a formal mode's accounted spend, all stages composed (replay.privacy.mode dp); nan: no formal guarantee
        "dp_epsilon": _get(report, "dp", "total_epsilon"),
        # the gate's verdict on this release at the goal's thresholds, its evidence rule for AUCs included
        "gate_leaking": verdict["leaking"],
        "gate_unsettled": verdict["unsettled"],
    }


def _report_of(metrics: dict[str, Any], stage: str) -> Any:
    privacy = metrics.get("privacy")
    return privacy.get(stage) if isinstance(privacy, dict) else None


def privacy_summary(variants: dict[str, Seeds], stages: list[str]) -> dict[str, dict[str, Any]]:
    """Per variant: the last stage's audit figures of each finished run that has one, how many finished runs
    keep no buffer or have no audit at all, and the utility side (stage-1 forgetting, stage-1 val MAE)."""
    last = stages[-1] if stages else None
    out = {}
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        audits, no_buffer, no_audit = [], 0, 0
        for metrics in ok:
            report = _report_of(metrics, last) if last else None
            figures = audit_figures(report)
            if figures is not None:
                audits.append(figures)
            elif isinstance(report, dict):
                no_buffer += 1
            else:
                no_audit += 1
        out[variant] = {
            "stage_audits": {
                stage: [f for f in (audit_figures(_report_of(m, stage)) for m in ok) if f is not None]
                for stage in stages
            },  # fmt: skip
            "seeds": len(seeds),
            "failed": [s for s, m in seeds if not m],
            "ok": len(ok),
            "audits": audits,
            "no_buffer": no_buffer,
            "no_audit": no_audit,
            "forgetting": [stage1_forgetting(m) for m in ok],
            "val_mae": [_stage1_val_mae(m, stages) for m in ok],
        }
    return out


def _values(audits: list[dict[str, Any]], key: str) -> list[float]:
    return [a[key] for a in audits]


def _attackers(audits: list[dict[str, Any]]) -> str:
    counts = Counter(a["attacker"] for a in audits)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{name} ({n} seeds)" for name, n in counts.most_common())


def _labels(audits: list[dict[str, Any]]) -> str:
    seen = {tuple(a["labels"]) if a["labels"] is not None else None for a in audits}
    if None in seen:
        return "?"
    stored = sorted({name for labels in seen for name in labels})
    if not stored:
        return "no"
    return "yes: " + ", ".join(stored) + ("" if len(seen) == 1 else " (some seeds)")


def _epsilon(audits: list[dict[str, Any]]) -> str:
    """The accountant's epsilon beside the attacks' figures, or "none" for a mode without a formal guarantee."""
    values = [a["dp_epsilon"] for a in audits if a.get("dp_epsilon") == a.get("dp_epsilon")]  # drop nan
    return _fmt(values, 2) if values else "none (no formal guarantee)"


def privacy_table(summary: dict[str, dict[str, Any]]) -> list[str]:
    header = [
        "strategy",
        "buffer",
        "seeds audited",
        "strongest attack",
        "SSIM p50",
        "SSIM p95",
        "PSNR p50 (dB)",
        "mean-slice baseline SSIM p95",
        "finding AUC on recon",
        "finding AUC on true slices",
        "re-id AUC",
        "membership AUC (patients)",
        "dp epsilon (all stages)",
        "labels in buffer",
        "stage-1 forgetting",
        "stage-1 val MAE",
    ]
    rows = []
    for variant, row in summary.items():
        seeds = f"{len(row['audits'])}/{row['seeds']}" + (f" (failed: seeds {row['failed']})" if row["failed"] else "")
        utility = [_fmt(row["forgetting"], 4), _fmt(row["val_mae"], 4)]
        audits = row["audits"]
        if audits:
            kinds = sorted({a["kind"] for a in audits})
            cells = [
                "/".join(kinds),
                seeds,
                _attackers(audits),
                *(_fmt(_values(audits, key)) for key in ("ssim_p50", "ssim_p95")),
                _fmt(_values(audits, "psnr_p50"), 1),
                *(_fmt(_values(audits, key)) for key in ("baseline_ssim_p95", "finding_auc_recon")),
                *(_fmt(_values(audits, key)) for key in ("finding_auc_true", "reid_auc", "membership_auc")),
                _epsilon(audits),
                _labels(audits),
            ]
        elif row["ok"] == 0:
            cells = ["?", seeds] + ["n/a"] * 11
        elif row["no_buffer"]:
            cells = ["none", seeds] + ["no buffer"] * 11
        else:
            cells = ["?", seeds] + ["no audit"] * 11
        rows.append([variant, *cells, *utility])
    return _table(header, rows)


def per_stage_privacy_table(variants: dict[str, Seeds], stages: list[str]) -> list[str]:
    """Strongest SSIM p95 and re-id AUC of every stage's audit (each audits the rows its stage added)."""
    header = ["strategy"] + [f"{stage} {what}" for stage in stages for what in ("SSIM p95 (attack)", "re-id AUC")]
    rows = []
    for variant, seeds in variants.items():
        ok = [m for _, m in seeds if m]
        cells = [variant]
        for stage in stages:
            reports = [_report_of(m, stage) for m in ok]
            audits = [f for f in (audit_figures(r) for r in reports) if f is not None]
            if audits:
                cells += [
                    f"{_fmt(_values(audits, 'ssim_p95'))} ({_attackers(audits)})",
                    _fmt(_values(audits, "reid_auc")),
                ]
            elif any(isinstance(r, dict) for r in reports):
                cells += ["no buffer", "no buffer"]
            else:
                cells += ["n/a", "n/a"]
        rows.append(cells)
    return _table(header, rows)


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


@dataclass(frozen=True)
class StageGate:
    """One stage's release across seeds: the figures' means, and how the gate judged each seed's release.

    `leaks[figure]`: seeds on which the gate (GOAL_GATE, its evidence rule included) calls that figure a leak;
    `unsettled[figure]`: seeds on which an AUC is above its threshold but its interval over patients reaches
    chance. figure is one of FIGURES."""

    stage: str
    ssim: float
    baseline: float
    reid: float
    membership: float
    seeds: int
    leaks: dict[str, int]
    unsettled: dict[str, int]

    @property
    def passes(self) -> bool:
        """Every seed's release passes the gate, and no figure is missing (a missing figure is not shown to pass)."""
        known = all(math.isfinite(v) for v in (self.ssim, self.baseline, self.reid, self.membership))
        return known and not any(self.leaks.values())


FIGURES = ("ssim", "reid", "membership")


def gate_by_stage(row: dict[str, Any]) -> list[StageGate]:
    """Every audited stage's StageGate: a buffer passes only if every stage's release does, on every seed."""
    out = []
    for stage, audits in row.get("stage_audits", {}).items():
        if audits:
            means = (_mean(_values(audits, k)) for k in ("ssim_p95", "baseline_ssim_p95", "reid_auc", "membership_auc"))
            leaks = {f: sum(f in a["gate_leaking"] for a in audits) for f in FIGURES}
            unsettled = {f: sum(f in a["gate_unsettled"] for a in audits) for f in FIGURES}
            out.append(StageGate(stage, *means, seeds=len(audits), leaks=leaks, unsettled=unsettled))
    return out


def stages_pass(stages: list[StageGate]) -> bool:
    """The gate's shipped thresholds, as gate@ applies them to each seed's release, on every stage. It takes
    gate_by_stage's figures rather than the row, so a caller that also prints or ranks them computes them once."""
    return bool(stages) and all(stage.passes for stage in stages)


def _judged(stage: StageGate, figure: str, mean: float) -> str:
    """yes/no for one condition of one stage over its seeds, with the count behind a no or an inconclusive yes."""
    leaks, unsettled, n = stage.leaks[figure], stage.unsettled[figure], stage.seeds
    if leaks:
        return f"no ({leaks}/{n} seeds)"
    if not math.isfinite(mean):
        return "no (missing)"
    if unsettled:
        return f"yes ({unsettled}/{n} seeds above it within chance)"
    return "yes"


def privacy_goal(summary: dict[str, dict[str, Any]]) -> list[str]:
    """One line per latent-buffer variant: the gate's conditions on every stage (each seed's release judged as
    gate@ judges it; means printed) and the forgetting condition, each yes/no; a missing number is a no."""
    reference = _mean(summary[REFERENCE_VARIANT]["forgetting"]) if REFERENCE_VARIANT in summary else float("nan")
    lines = []
    for variant, row in summary.items():
        if not any(a["kind"] == "latent" for a in row["audits"]):
            continue
        stages = gate_by_stage(row)
        parts = []
        for stage in stages:
            parts.append(
                f"{stage.stage}: SSIM p95 {_num(stage.ssim, 3)} <= {_num(stage.baseline, 3)} + {GOAL_SSIM_MARGIN}: "
                f"{_judged(stage, 'ssim', stage.ssim - stage.baseline)}, "
                f"re-id {_num(stage.reid, 3)}: {_judged(stage, 'reid', stage.reid)}, "
                f"membership {_num(stage.membership, 3)}: {_judged(stage, 'membership', stage.membership)}"
            )
        forgetting = _mean(row["forgetting"])
        allowed = GOAL_FORGETTING_SHARE * reference
        kept, passed = forgetting <= allowed, stages_pass(stages)
        lines.append(
            f"- {variant}: {'; '.join(parts)} (AUCs <= {GOAL_MAX_REID_AUC}) -> gate: {_yes(passed)}; "
            f"stage-1 forgetting {_num(forgetting, 4)} <= {GOAL_FORGETTING_SHARE:.0%} of {REFERENCE_VARIANT}'s "
            f"{_num(reference, 4)} = {_num(allowed, 4)}: {_yes(kept)} -> goal met: {_yes(passed and kept)}"
        )
    return lines or ["- no latent buffer was audited in this comparison"]


def default_mode_choice(summary: dict[str, dict[str, Any]], plain: str = "latent_replay") -> str:
    """The rule the project's default buffer mode is picked by: among the latent-replay variants whose every
    seed's release passes the gate at every stage, the one with the least stage-1 forgetting. One line, with the
    numbers it was decided on; without a passing variant, the closest one (fewest leaking seed-stage figures,
    then the smallest worst mean over a threshold) and why it fails."""
    candidates, failing = [], []
    for variant, row in summary.items():
        audits = [a for a in row["audits"] if a["kind"] == "latent"]
        if not audits or not (variant == plain or variant.startswith(plain + "_")):
            continue
        forgetting, stages = _mean(row["forgetting"]), gate_by_stage(row)
        if stages_pass(stages) and math.isfinite(forgetting):
            candidates.append((forgetting, variant))
        else:
            leaks = sum(sum(st.leaks.values()) for st in stages)
            excess = max((max(st.ssim - st.baseline - GOAL_SSIM_MARGIN, st.reid - GOAL_MAX_REID_AUC,
                              st.membership - GOAL_MAX_REID_AUC) for st in stages), default=float("inf"))  # fmt: skip
            failing.append((leaks, excess if math.isfinite(excess) else float("inf"), variant))
    if not candidates:
        closest = ""
        if failing:
            leaks, excess, variant = min(failing)
            worst = f"worst mean {_num(abs(excess), 3)} {'over' if excess > 0 else 'within'} its threshold"
            closest = f"; closest: `{variant}` ({leaks} leaking seed-stage figure(s), {worst})"
        return f"No default mode chosen: no latent variant passes the gate on every seed and stage{closest}"
    forgetting, variant = min(candidates)
    plain_forgetting = _mean(summary[plain]["forgetting"]) if plain in summary else float("nan")
    return (
        f"Default mode by the rule (of the latent variants that pass the gate on every seed and stage, the least "
        f"stage-1 forgetting): **{variant}** (stage-1 forgetting {_num(forgetting, 4)}, plain `{plain}` "
        f"{_num(plain_forgetting, 4)}; {len(candidates)} variant(s) pass: "
        f"{', '.join(v for _, v in sorted(candidates))})"
    )


def privacy_utility_plot(path: Path, summary: dict[str, dict[str, Any]]) -> bool:
    """Strongest-attack SSIM p95 against stage-1 forgetting, one point per audited variant with sd error bars
    in both axes; the mean-slice baseline SSIM p95 as a dashed line. False (nothing drawn) without a point."""
    points = []
    for variant, row in summary.items():
        xs = _values(row["audits"], "ssim_p95")
        x, y = _mean(xs), _mean(row["forgetting"])
        if math.isfinite(x) and math.isfinite(y):
            points.append((variant, x, _sd(xs), y, _sd(row["forgetting"])))
    if not points:
        return False
    plotted = {variant for variant, *_ in points}
    baseline = _mean([v for variant in plotted for v in _values(summary[variant]["audits"], "baseline_ssim_p95")])
    reference = _mean(summary[REFERENCE_VARIANT]["forgetting"]) if REFERENCE_VARIANT in summary else float("nan")
    with figure(path, size=(6.4, 4.4)) as (_, axes):
        ax = axes[0, 0]
        for variant, x, x_sd, y, y_sd in points:
            ax.errorbar(x, y, xerr=x_sd, yerr=y_sd, fmt="o", capsize=3, label=variant)
            ax.annotate(variant, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
        if math.isfinite(baseline):
            ax.axvline(baseline, linestyle="--", color="grey", label=f"mean-slice baseline ({baseline:.3f})")
        if math.isfinite(reference):
            ax.axhline(reference, linestyle=":", color="black", label=f"{REFERENCE_VARIANT} (no buffer)")
        ax.set_xlabel("strongest attack SSIM p95 (last stage's buffer)")
        ax.set_ylabel("stage-1 forgetting (recon loss)")
        ax.set_title("privacy vs utility (mean ± sd over seeds)", fontsize=9)
        ax.legend(fontsize=6)
    return True


def with_full_privacy_reports(runs, results: dict[str, dict[str, Any] | None], files: RunFiles):
    """`dvc exp show` drops lists and nulls from metrics (labels_in_buffer, an unmeasured re-id AUC): each
    audit report is read whole from its experiment's commit where it can be, the shown one kept otherwise."""
    out = dict(results)
    for name, *_ in runs:
        metrics = results.get(name)
        if not metrics or not isinstance(metrics.get("privacy"), dict):
            continue
        reports = dict(metrics["privacy"])
        for stage in reports:
            text = files.text(name, privacy_report(stage).as_posix())
            try:
                whole = json.loads(text) if text else None
            except json.JSONDecodeError:
                whole = None
            if isinstance(whole, dict):
                reports[stage] = whole
        out[name] = {**metrics, "privacy": reports}
    return out


def privacy_section(figures: Path, variants: dict[str, Seeds], stages: list[str]) -> list[str]:
    """## Privacy: the table, the plot and the goal lines (nothing to show without any audit report)."""
    if not any(isinstance(m.get("privacy"), dict) for seeds in variants.values() for _, m in seeds if m):
        return ["## Privacy", "", "No privacy audit (data/privacy/<stage>.json) in these experiments' metrics.", ""]
    summary = privacy_summary(variants, stages)
    last = stages[-1] if stages else "?"
    drawn = privacy_utility_plot(figures / PRIVACY_FIGURE, summary)
    val_mae_known = any(math.isfinite(v) for row in summary.values() for v in row["val_mae"])
    first = stages[0] if stages else "?"
    return [
        "## Privacy",
        "",
        f"The audit of the last stage's buffer (audit@{last}: the rows {last} added; earlier rows were audited "
        "by their own stage, below), mean ± sd over the audited seeds. Strongest attack: the attacker whose "
        "reconstructions have the highest SSIM p95 against the true slices (an image buffer stores the slices: "
        "attacker `stored`, SSIM 1); SSIM p50 and PSNR p50 are that attacker's. Mean-slice baseline: the "
        "attacker's mean slice, what is known without the buffer. Finding AUC: the attacker's finding "
        "classifier on the best reconstructions vs on the true slices. Re-id AUC: whether a known patient is "
        "in the buffer (0.5 = chance). Labels in buffer: finding labels stored beside the rows (? where only "
        "`dvc exp show` was read: it drops lists). Utility: stage-1 forgetting = reconstruction loss on "
        f"{first}'s held-out slices after {last} minus right after {first} (> 0 = forgot); stage-1 val MAE = "
        + (
            f"validation MAE loss at the end of pretrain@{first} (the quality cost of a mode that changes "
            "training, e.g. adversarial)."
            if val_mae_known
            else f"n/a: pretrain@{first}'s run record (data/metrics/pretrain-{first}.json) is not in these "
            "experiments' metrics."
        ),
        "",
        *privacy_table(summary),
        "",
        (
            f"Privacy-utility plot: [{PRIVACY_FIGURE}](figures/{PRIVACY_FIGURE}) (strongest attack SSIM p95 vs "
            "stage-1 forgetting, sd error bars, dashed line: mean-slice baseline). "
            if drawn
            else "No privacy-utility plot: no variant has both an audited buffer and a stage-1 forgetting. "
        )
        + f"The attacker had the buffer's rows (data/buffers/{last}, without labels unless stored), the model "
        f"shared with them (data/models/{last}) and windowed CT slices of other patients "
        "(privacy.attacker_cohort); the victims' own slices only score the attacks. A low SSIM is the outcome "
        "of these attacks at these budgets, not a proof that no other attack recovers more.",
        "",
        "Per stage (strongest attack SSIM p95, re-id AUC):",
        "",
        *per_stage_privacy_table(variants, stages),
        "",
        f"**Privacy goal** (latent buffers): every seed's release at every stage passes the gate's shipped "
        f"thresholds (strongest SSIM p95 <= mean-slice baseline p95 + {GOAL_SSIM_MARGIN}, re-id and patient "
        f"membership AUCs <= {GOAL_MAX_REID_AUC}) as gate@ judges it: an AUC above its threshold is a leak when its "
        "95 % interval over patients is clear of chance (0.5), and counts as above it within chance otherwise; "
        "figures are means over seeds, a no says on how many seeds the gate found that leak. And stage-1 "
        f"forgetting (mean) <= {GOAL_FORGETTING_SHARE:.0%} of {REFERENCE_VARIANT}'s.",
        "",
        *privacy_goal(summary),
        "",
        default_mode_choice(summary),
        "",
    ]


def write_report(
    out_dir: Path,
    runs,
    results: dict[str, dict[str, Any] | None],
    params: dict[str, Any],
    config: str,
    elapsed: float | None,
    files: RunFiles | None = None,
    unfinished: frozenset[str] | set[str] = frozenset(),
    jobs: int = 1,
) -> Path:
    """`jobs`: experiments that ran side by side (the wall time depends on it). `unfinished`: experiment names
    still queued or running when the report is written (`--collect-only`
    during a run, or after the run was stopped). They are left out of every mean and named once, so that a
    run that never happened is not counted as a failed seed."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):  # figures of an earlier comparison must not be listed as this one's
        old.unlink()
    if files is not None:
        results = with_full_privacy_reports(runs, results, files)
    variants: dict[str, Seeds] = {}
    for name, variant, seed, _ in runs:
        if name not in unfinished:
            variants.setdefault(variant, []).append((seed, results.get(name)))
    waiting = [name for name, *_ in runs if name in unfinished]

    first = next((m for _, seeds in variants.items() for _, m in seeds if m), {})
    tasks, stages = ordered_names(first, "tasks"), ordered_names(first, "stages")
    recon_heatmaps(figures, variants, stages)
    if tasks and stages:
        auc_per_stage(figures / "auc_per_stage.png", variants, tasks, stages)
    if files is not None and stages:
        loss_curves(figures / "loss_curves.png", runs, files, stages)
        buffer_embeddings(figures / "buffer_tsne.png", variants, files, stages[-1], runs)
    privacy = privacy_section(figures, variants, stages)  # draws privacy_utility.png before the figure list
    plasticity = plasticity_section(figures, variants, tasks, stages)  # draws stability_plasticity.png
    marks = flags(variants, tasks, stages)

    config_block = config_entry(params, config)
    text = [
        "# Strategy comparison",
        "",
        f"Config `{config}`: seeds {config_block['seeds']}, overrides `{config_block.get('overrides', {})}`; every "
        "variant trains the same epochs x steps on the new data of each stage (replay batches come on top).",
        (
            f"Measured wall time of the whole comparison: {elapsed / 60:.1f} min"
            + (f", {jobs} experiments side by side." if jobs > 1 else ", one experiment at a time.")
            if elapsed
            else ""
        ),
        (
            f"**Not finished when this report was written** ({len(waiting)} of {len(runs)} experiments still "
            f"queued or running, or the comparison was stopped before them): {', '.join(waiting)}. Every figure "
            "below is over the experiments that finished."
            if waiting
            else ""
        ),
        "",
        *sanity_block(variants, tasks, stages),
        "## Strategies",
        "",
        "AUC columns: linear probe on pooled tokens with all training labels, encoder after the last stage, "
        "patient-level folds. BWT < 0 = forgetting; FWT = after the previous stage vs the random encoder. "
        "recon: masked-reconstruction loss on each stage's held-out slices through the decoder that stage saved "
        "(the encoder's forgetting; lower is better); own decoder: through the evaluated model's own decoder, "
        "as reconstructing with the current model would (the decoder's drift counts too); recon forgetting > 0 = "
        "worse than right after that stage. steps: optimiser steps over all "
        "stages (equal budgets; replay batches ride on the same steps).",
        "",
        *main_table(variants, tasks, marks),
        "",
        "## Every probe",
        "",
        "Average over tasks of the final AUC (encoder after the last stage), its BWT and FWT, per probe: linear "
        "and kNN on pooled tokens, attentive (learned query over the tokens), token (one prediction per patch "
        "against the lesion masks), finetune (a copy of the encoder and a head trained end to end for the fixed "
        "`eval.finetune` budget). References on the same folds: the random encoder of `evaluate-init`, and a "
        "linear probe on raw downsampled pixels.",
        "",
        *probe_tables(variants, tasks, marks),
        *plasticity,
        *privacy,
        "Figures: " + ", ".join(f"[{p.name}](figures/{p.name})" for p in sorted(figures.glob("*.png"))),
        "",
        "Per-run R heatmaps of every probe are written by each experiment's `report` stage (data/report/figures) "
        "and logged to its MLflow run.",
    ]
    out = out_dir / "compare.md"
    out.write_text("\n".join(text) + "\n")
    return out
