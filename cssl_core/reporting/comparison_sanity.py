"""The sanity block of reports/compare.md: can this comparison tell strategies apart at all?

A table of means ± sd says nothing when the numbers it compares are noise: a probe that scores the pretrained
encoder no better than a random one cannot rank pretraining strategies, a baseline that does not forget leaves
nothing for a continual method to fix, and a column whose strategies differ by less than their seeds do cannot
order them. Each question is answered here from the experiments' metric trees (cssl_core/reporting/tree.as_metric_tree),
with its numbers, before any table; the plasticity / stability table and scatter show what each strategy
learns of the new stage beside what it keeps of the first. Every function is pure over in-memory trees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cssl_core.reporting.figures import figure
from cssl_core.reporting.stats import fmt, mean, metric, num, sd, table
from cssl_core.reporting.tree import matrix_from_tree, ordered_names

Seeds = list[tuple[int, dict[str, Any] | None]]  # (seed, metrics or None when that run failed)
Cell = tuple[str, str]  # (probe family key such as "linear@1.0", task)

HEADLINE = "linear@1.0"
BEAT_SDS = 2.0  # pretraining beats random / finetune forgets when the mean paired difference exceeds 2 sd
MIN_RANK_RATIO = 2.0  # spread between strategies / seed sd below this: the column cannot rank strategies
MARK = "~"  # prefixes an uninformative column's cells: GitHub strips style attributes, so no grey text
FORGETTING_REFERENCE = "finetune"  # the strategy with no defence against forgetting
SCATTER_FIGURE = "stability_plasticity.png"


def finished(variants: dict[str, Seeds]) -> list[tuple[int, dict[str, Any]]]:
    """(seed, metrics) of every finished run, all variants together."""
    return [(seed, m) for seeds in variants.values() for seed, m in seeds if m]


def probe_families(variants: dict[str, Seeds]) -> list[str]:
    """Every `<probe>@<fraction>` key with an R matrix and a random-encoder reference, in first-seen order, so
    a probe added later (knn@1.0, finetune@0.1) is checked without naming it here."""
    keys: list[str] = []
    for _, m in finished(variants):
        for key, block in m.items():
            if (
                "@" in key
                and key not in keys
                and isinstance(block, dict)
                and isinstance(block.get("R"), dict)
                and isinstance(block.get("random_encoder"), dict)
            ):
                keys.append(key)
    return keys


def task_owners(variants: dict[str, Seeds]) -> dict[str, int]:
    """Task -> index of the stage trained on its cohort and window (-1: none), from the summary's `task_stage`
    block; empty for trees written before it existed (then no task is a stage's own)."""
    for _, m in finished(variants):
        block = m.get("task_stage")
        if isinstance(block, dict):
            return {task: int(index) for task, index in block.items() if isinstance(index, int | float)}
    return {}


def owned_tasks(owners: dict[str, int], tasks: list[str], stage_index: int) -> list[str]:
    return [t for t in tasks if owners.get(t) == stage_index]


@dataclass(frozen=True)
class Paired:
    """A difference measured per seed: its mean and the sd of the per-seed differences (nan under 2 seeds)."""

    n: int
    mean: float
    sd: float

    def exceeds(self, sign: float = 1.0) -> bool | None:
        """sign * mean > 2 sd; None when it cannot be told (fewer than two seeds or no value)."""
        if self.n < 2 or not math.isfinite(self.mean):
            return None
        return sign * self.mean > BEAT_SDS * self.sd

    def text(self, digits: int = 3, unit: str = "") -> str:
        if self.n == 0 or not math.isfinite(self.mean):
            return "n/a"
        spread = f" ± {self.sd:.{digits}f}" if self.n > 1 else ""
        return f"{self.mean:+.{digits}f}{spread}{unit} (n={self.n})"


def paired(per_seed: dict[int, list[float]]) -> Paired:
    """Average the finite values of each seed (several strategies share the encoder after stage 1), then mean
    and sample sd over seeds."""
    values = [mean(v) for v in per_seed.values()]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return Paired(0, float("nan"), float("nan"))
    return Paired(len(values), float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan)


def verdict(flag: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a (one seed)"}[flag]


# ---- a. does stage-1 pretraining beat the random encoder? ----


def random_auc(m: dict[str, Any], key: str, task: str) -> float:
    return metric(m, key, "random_encoder", task)


def pixels_auc(m: dict[str, Any], key: str, task: str) -> float:
    """The raw-pixel reference of a probe family: the linear probe on downsampled slices at the same label
    fraction (`pixels@0.1` beside `linear@0.1` and `attentive@0.1`); nan in trees without it."""
    return metric(m, f"pixels@{key.split('@', 1)[1]}", "per_task", task)


def pretraining_minus(
    variants: dict[str, Seeds], key: str, task: str, first: str, reference: Callable[[dict[str, Any], str, str], float]
) -> Paired:
    """R[first stage][task] - reference(tree, key, task), paired per seed over every finished run."""
    per_seed: dict[int, list[float]] = {}
    for seed, m in finished(variants):
        per_seed.setdefault(seed, []).append(metric(m, key, "R", first, task) - reference(m, key, task))
    return paired(per_seed)


def pretraining_vs_random(variants: dict[str, Seeds], key: str, task: str, first: str) -> Paired:
    return pretraining_minus(variants, key, task, first, random_auc)


def informative_cells(variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> dict[Cell, bool | None]:
    """(family, task) -> does pretraining beat random by > 2 sd (None: cannot tell with one seed)."""
    if not stages:
        return {}
    return {
        (key, task): pretraining_vs_random(variants, key, task, stages[0]).exceeds()
        for key in probe_families(variants)
        for task in tasks
    }


def uninformative(cells: dict[Cell, bool | None], key: str, tasks: list[str]) -> bool:
    """True when any of `tasks` is shown not to beat random for `key`: a number over such a task (its own cell
    or an average that includes it) cannot rank strategies. One seed shows nothing: never marked."""
    return any(cells.get((key, t)) is False for t in tasks)


def averaged_tasks(field: str, owners: dict[str, int], tasks: list[str], n_stages: int) -> list[str]:
    """The tasks a family's `field` is computed over: average_final every task, bwt those of stages before
    the last (forgetting needs a later stage), fwt those of stages after the first; every task when the
    owners are unknown (trees without `task_stage`)."""
    if not owners or field == "average_final":
        return list(tasks)
    if field == "bwt":
        chosen = [t for t in tasks if 0 <= owners.get(t, -1) < n_stages - 1]
    else:
        chosen = [t for t in tasks if owners.get(t, -1) > 0]
    return chosen or list(tasks)


@dataclass(frozen=True)
class Flags:
    """Which cells of the tables below the sanity block are uninformative (marked, not used for ranking)."""

    cells: dict[Cell, bool | None]
    owners: dict[str, int]
    tasks: list[str]
    n_stages: int

    def task(self, key: str, task: str) -> bool:
        return self.cells.get((key, task)) is False

    def field(self, key: str, field: str) -> bool:
        return uninformative(self.cells, key, averaged_tasks(field, self.owners, self.tasks, self.n_stages))


NO_FLAGS = Flags({}, {}, [], 0)


def flags(variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> Flags:
    return Flags(informative_cells(variants, tasks, stages), task_owners(variants), list(tasks), len(stages))


def mark(cell: str, flagged: bool) -> str:
    return f"{MARK}{cell}" if flagged and cell not in ("n/a", "") else cell


def pretraining_table(variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> list[str]:
    first = stages[0]
    runs = [m for _, m in finished(variants)]
    rows = []
    for key in probe_families(variants):
        for task in tasks:
            diff = pretraining_vs_random(variants, key, task, first)
            rows.append(
                [
                    key,
                    task,
                    fmt([metric(m, key, "R", first, task) for m in runs]),
                    fmt([random_auc(m, key, task) for m in runs]),
                    diff.text(),
                    verdict(diff.exceeds()),
                    fmt([pixels_auc(m, key, task) for m in runs]),
                    pretraining_minus(variants, key, task, first, pixels_auc).text(),
                ]
            )
    header = [
        "probe",
        "task",
        f"AUC after {first}",
        "random encoder AUC",
        "difference (paired)",
        "beats random",
        "raw pixels AUC (linear)",
        "minus raw pixels (paired)",
    ]
    return table(header, rows)


# ---- b. does finetune forget stage 1? ----


def carries(trees: list[dict[str, Any]], family: str) -> bool:
    """Whether any of these metric trees holds R matrix `family` (trees written before recon_own lack it)."""
    return any(matrix_from_tree(tree, family) is not None for tree in trees)


def recon_forgetting_percent(metrics: dict[str, Any], family: str = "recon") -> float:
    """100 (R[last, 0] - R[0, 0]) / R[0, 0] of label-free family `family` (recon: through the first stage's
    decoder; recon_own: through each model's own): > 0 = the first stage's held-out slices are reconstructed
    worse after the last stage than right after the first."""
    matrix = matrix_from_tree(metrics, family)
    if matrix is None or not matrix.size or not matrix[0, 0]:
        return float("nan")
    return float(100.0 * (matrix[-1, 0] - matrix[0, 0]) / matrix[0, 0])


def probe_on(metrics: dict[str, Any], key: str, row: int, tasks: list[str]) -> float:
    """Mean AUC of family `key` over `tasks` with the encoder after stage `row` (nan without them)."""
    matrix = matrix_from_tree(metrics, key)
    if matrix is None or not tasks:
        return float("nan")
    order = ordered_names(metrics, "tasks")
    columns = [order.index(t) for t in tasks if t in order]
    return mean([float(matrix[row, j]) for j in columns]) if columns else float("nan")


def finetune_forgetting(
    variants: dict[str, Seeds], tasks: list[str], stages: list[str], cells: dict[Cell, bool | None]
) -> list[str]:
    """The first stage's metric right after it and after the last stage, for the no-defence strategy."""
    runs = [m for _, m in variants.get(FORGETTING_REFERENCE, []) if m]
    if not runs:
        return [f"No finished `{FORGETTING_REFERENCE}` run: forgetting of the baseline cannot be shown."]
    first, last = stages[0], stages[-1]
    seeds = {seed: m for seed, m in variants[FORGETTING_REFERENCE] if m}

    def recon_row(label: str, family: str) -> list[str]:
        """Family `family`'s loss on the first stage's held-out slices right after it and after the last."""
        recon = [matrix_from_tree(m, family) for m in runs]
        before = [float(r[0, 0]) if r is not None else math.nan for r in recon]
        after = [float(r[-1, 0]) if r is not None else math.nan for r in recon]
        change = paired({seed: [recon_forgetting_percent(m, family)] for seed, m in seeds.items()})
        return [label, fmt(before, 4), fmt(after, 4), change.text(1, " %"), verdict(change.exceeds(+1.0))]

    def probe_row(label: str, key: str, on: list[str]) -> list[str]:
        """Family `key`'s mean AUC over tasks `on` right after the first stage and after the last, paired."""
        flagged = uninformative(cells, key, on)
        diff = paired({s: [probe_on(m, key, -1, on) - probe_on(m, key, 0, on)] for s, m in seeds.items()})
        return [
            label,
            mark(fmt([probe_on(m, key, 0, on) for m in runs]), flagged),
            mark(fmt([probe_on(m, key, -1, on) for m in runs]), flagged),
            mark(diff.text(), flagged),
            verdict(diff.exceeds(-1.0)),
        ]

    rows = [recon_row(f"recon loss on {first}'s held-out slices, {first}'s decoder (lower = better)", "recon")]
    if carries(runs, "recon_own"):
        rows.append(recon_row(f"recon loss on {first}'s held-out slices, the model's own decoder", "recon_own"))
    own = owned_tasks(task_owners(variants), tasks, 0)
    for key in probe_families(variants):
        if not own:
            rows.append([f"{key} AUC on {first}'s tasks", "n/a", "n/a", "n/a (no task owned by it)", "n/a"])
            continue
        rows.append(probe_row(f"{key} AUC on {first}'s tasks ({', '.join(own)})", key, own))
        # with several tasks, each on its own too: forgetting one window's finding can hide in the average
        rows += [probe_row(f"{key} AUC on {task}", key, [task]) for task in (own if len(own) > 1 else [])]
    header = ["metric", f"right after {first}", f"after {last}", "change (paired over seeds)", "forgets (> 2 sd)"]
    per_seed = ", ".join(f"seed {seed} {recon_forgetting_percent(m):+.1f} %" for seed, m in sorted(seeds.items()))
    return [*table(header, rows), "", f"The recon change ({first}'s decoder) of each seed: {per_seed}."]


# ---- c. can a column rank strategies? ----


@dataclass(frozen=True)
class Spread:
    """Spread between strategies against the seed-to-seed spread within them."""

    between_sd: float  # sample sd of the per-strategy means
    between_range: float  # max - min of the per-strategy means
    seed_sd: float  # pooled within-strategy sd: sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))
    strategies: int

    @property
    def ratio(self) -> float:
        if not (math.isfinite(self.between_sd) and math.isfinite(self.seed_sd)):
            return float("nan")
        if self.seed_sd == 0:
            return float("inf") if self.between_sd > 0 else float("nan")
        return self.between_sd / self.seed_sd

    def ranks(self) -> bool | None:
        return None if math.isnan(self.ratio) else self.ratio >= MIN_RANK_RATIO


def spread(per_variant: dict[str, list[float]]) -> Spread:
    """`per_variant`: strategy -> one value per finished seed (nan skipped)."""
    groups = [[v for v in values if math.isfinite(v)] for values in per_variant.values()]
    groups = [g for g in groups if g]
    means = [float(np.mean(g)) for g in groups]
    between = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    span = float(max(means) - min(means)) if len(means) > 1 else float("nan")
    dof = sum(len(g) - 1 for g in groups)
    within = sum((len(g) - 1) * float(np.var(g, ddof=1)) for g in groups if len(g) > 1)
    pooled = math.sqrt(within / dof) if dof else math.nan
    return Spread(between, span, pooled, len(means))


Column = tuple[str, Callable[[dict[str, Any]], float], bool]  # (label, value of one run, uninformative)


def _final(key: str, task: str) -> Callable[[dict[str, Any]], float]:
    """AUC of `key` on `task` with the encoder after the last stage (the main table's per-task cell)."""
    return lambda m: metric(m, key, "R", (ordered_names(m, "stages") or [""])[-1], task)


def columns(variants: dict[str, Seeds], tasks: list[str], stages: list[str], marks: Flags) -> list[Column]:
    """The main table's metric columns, every probe family's average and BWT, and the plasticity / stability
    columns: each with how one run's value is read and whether it is uninformative."""
    out: list[Column] = []
    for task in tasks:
        out.append((f"{task} AUC ({HEADLINE})", _final(HEADLINE, task), marks.task(HEADLINE, task)))
    for name, field in (("avg AUC", "average_final"), ("BWT AUC", "bwt"), ("FWT AUC", "fwt")):
        out.append((f"{name} ({HEADLINE})", lambda m, f=field: metric(m, HEADLINE, f), marks.field(HEADLINE, field)))
    out += [
        ("recon final", lambda m: metric(m, "recon", "average_final"), False),
        ("recon forgetting", lambda m: metric(m, "recon", "bwt"), False),
        ("CKA BWT", lambda m: metric(m, "cka", "bwt"), False),
    ]
    with_own = carries([m for _, m in finished(variants)], "recon_own")
    if with_own:
        out.append(("recon forgetting, own decoder", lambda m: metric(m, "recon_own", "bwt"), False))
    for key in probe_families(variants):
        if key == HEADLINE:
            continue
        out += [
            (f"{key} avg AUC", lambda m, k=key: metric(m, k, "average_final"), marks.field(key, "average_final")),
            (f"{key} BWT", lambda m, k=key: metric(m, k, "bwt"), marks.field(key, "bwt")),
        ]
    if stages:
        first, last = stages[0], stages[-1]
        out += [
            (f"{last} recon after {last}", lambda m: metric(m, "recon", "R", last, last), False),
            (f"{first} recon after {last}", lambda m: metric(m, "recon", "R", last, first), False),
        ]
        if with_own:
            out.append(
                (f"{first} recon after {last}, own decoder", lambda m: metric(m, "recon_own", "R", last, first), False)
            )
    return out


def spread_table(
    variants: dict[str, Seeds], tasks: list[str], stages: list[str], marks: Flags
) -> tuple[list[str], list[str], list[str]]:
    """The table, the columns that can rank strategies and those that cannot (uninformative ones included)."""
    rows, can, cannot = [], [], []
    for label, read, bad in columns(variants, tasks, stages, marks):
        s = spread({v: [read(m) for _, m in seeds if m] for v, seeds in variants.items()})
        ranks = s.ranks()
        shown = mark(label, bad)
        if ranks and not bad:
            can.append(shown)
        elif ranks is not None:
            cannot.append(shown)
        ratio = "∞" if s.ratio == math.inf else num(s.ratio, 2)
        answer = {True: "yes", False: "**no**", None: "n/a"}[ranks]
        if bad and ranks:
            answer = "**no** (pretraining does not beat random on its task(s))"
        rows.append([shown, num(s.between_sd, 4), num(s.between_range, 4), num(s.seed_sd, 4), ratio, answer])
    header = [
        "column",
        "spread: sd of strategy means",
        "range: max - min",
        "seed sd (pooled within strategy)",
        "ratio (sd / seed sd)",
        f"ranks strategies (ratio >= {MIN_RANK_RATIO:g})",
    ]
    return table(header, rows), can, cannot


def sanity_block(variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> list[str]:
    """## Sanity: the three questions, each with its table, and the list of uninformative columns."""
    if not stages or not finished(variants):
        return ["## Sanity: can this comparison tell strategies apart?", "", "No finished run to check.", ""]
    first, last = stages[0], stages[-1]
    marks = flags(variants, tasks, stages)
    flagged = [f"{key} {task}" for (key, task), ok in marks.cells.items() if ok is False]
    spreads, can, cannot = spread_table(variants, tasks, stages, marks)
    seeds = sorted({seed for seed, _ in finished(variants)})
    return [
        "## Sanity: can this comparison tell strategies apart?",
        "",
        f"Read this before the tables ({len(seeds)} seed(s) finished). A column is only worth ranking strategies "
        "by when (a) the pretrained encoder beats a random one on it, (b) there is forgetting to prevent and "
        f'(c) strategies differ by more than seeds do. "> {BEAT_SDS:g} sd": mean of the per-seed differences '
        f"above {BEAT_SDS:g} x their sample sd (needs >= 2 seeds).",
        "",
        f"**a. Does {first} pretraining beat the random encoder?** Probe AUC of the encoder right after {first} "
        f"(the same for every strategy of a seed: averaged over the seed's finished runs) minus the random "
        "encoder's, per seed. Beside it, for reading only (no cell is flagged by it): a linear probe on the raw "
        "downsampled slices with the same labels, what a user gets with no encoder at all.",
        "",
        *pretraining_table(variants, tasks, stages),
        "",
        (
            f"Uninformative (pretraining does not beat random): {', '.join(flagged)}. Their cells, and every "
            f"average over tasks that includes one (avg AUC; BWT over earlier stages' tasks; FWT over later "
            f"ones), are prefixed `{MARK}` in every table below and are not used to rank strategies (a `{MARK}` "
            "marker, not grey text: GitHub strips style attributes)."
            if flagged
            else f"No column is shown uninformative{' (one seed: not testable)' if len(seeds) < 2 else ''}."
        ),
        "",
        f"**b. Does {FORGETTING_REFERENCE} forget {first}?** Its {first} metric right after {first} and after "
        f"{last}, mean ± sd over seeds; change = after - before (recon: relative, in %), paired per seed.",
        "",
        *finetune_forgetting(variants, tasks, stages, marks.cells),
        "",
        "**c. Can each column rank strategies?** Spread between strategies = sample sd of the per-strategy means "
        "(max - min beside it) over the seed sd = pooled within-strategy sd. Below "
        f"{MIN_RANK_RATIO:g}, seed noise is as large as the differences: the column cannot rank strategies.",
        "",
        *spreads,
        "",
        f"Can rank strategies: {', '.join(can) or 'none'}. Cannot: {', '.join(cannot) or 'none'}.",
        "",
    ]


# ---- plasticity (the new stage) and stability (what is kept of the first) ----


def plasticity_values(metrics: dict[str, Any], owners: dict[str, int], tasks: list[str], stages: list[str]):
    """One run: (new-stage recon R[last, last], last stage's val MAE, headline AUC on the last stage's tasks,
    first-stage recon after the last R[last, 0], headline AUC on the first stage's tasks after the last)."""
    first, last = stages[0], stages[-1]
    return (
        metric(metrics, "recon", "R", last, last),
        metric(metrics, "pretrain", last, "val_mae"),
        probe_on(metrics, HEADLINE, -1, owned_tasks(owners, tasks, len(stages) - 1)),
        metric(metrics, "recon", "R", last, first),
        probe_on(metrics, HEADLINE, -1, owned_tasks(owners, tasks, 0)),
    )


def plasticity_table(variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> list[str]:
    first, last = stages[0], stages[-1]
    owners = task_owners(variants)
    cells = informative_cells(variants, tasks, stages)
    marks = (
        False,
        False,
        uninformative(cells, HEADLINE, owned_tasks(owners, tasks, len(stages) - 1)),
        False,
        uninformative(cells, HEADLINE, owned_tasks(owners, tasks, 0)),
    )
    rows = []
    for variant, seeds in variants.items():
        values = [plasticity_values(m, owners, tasks, stages) for _, m in seeds if m]
        rows.append(
            [variant]
            + [
                mark(fmt([v[k] for v in values], 4 if k < 2 or k == 3 else 3), marks[k]) if values else "n/a"
                for k in range(5)
            ]
        )
    header = [
        "strategy",
        f"new: {last} recon after {last} (lower = better)",
        f"new: {last} final val MAE",
        f"new: {HEADLINE} AUC on {last}'s tasks",
        f"kept: {first} recon after {last} (lower = better)",
        f"kept: {HEADLINE} AUC on {first}'s tasks after {last}",
    ]
    return table(header, rows)


Point = tuple[str, float, float, float, float]  # (strategy, x mean, x sd, y mean, y sd)


def scatter_points(variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> dict[str, list[Point]]:
    """Panel ("recon", "probe") -> one point per strategy with finite means on both axes: x = the new stage's
    metric, y = the first stage's after the last. A strategy without the matrices has no point."""
    owners = task_owners(variants)
    points: dict[str, list[Point]] = {"recon": [], "probe": []}
    for variant, seeds in variants.items():
        values = [plasticity_values(m, owners, tasks, stages) for _, m in seeds if m]
        for name, xi, yi in (("recon", 0, 3), ("probe", 2, 4)):
            xs, ys = [v[xi] for v in values], [v[yi] for v in values]
            x, y = mean(xs), mean(ys)
            if math.isfinite(x) and math.isfinite(y):
                points[name].append((variant, x, sd(xs), y, sd(ys)))
    return points


def stability_plasticity_plot(path: Path, variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> bool:
    """The scatter_points as error-bar plots: the recon panel and, when its tasks exist, the headline probe's.
    False (nothing drawn) without any point."""
    first, last = stages[0], stages[-1]
    owners, cells = task_owners(variants), informative_cells(variants, tasks, stages)

    def flagged(stage_index: int) -> str:  # the axis says so where pretraining does not beat random
        bad = uninformative(cells, HEADLINE, owned_tasks(owners, tasks, stage_index))
        return f" {MARK}uninformative: pretrained <= random" if bad else ""

    labels = {
        "recon": (f"{last} recon after {last} (lower = better)", f"{first} recon after {last} (lower = better)"),
        "probe": (
            f"{HEADLINE} AUC on {last}'s tasks (higher = better){flagged(len(stages) - 1)}",
            f"{HEADLINE} AUC on {first}'s tasks after {last}{flagged(0)}",
        ),
    }
    points = {name: p for name, p in scatter_points(variants, tasks, stages).items() if p}
    if not points:
        return False
    with figure(path, 1, len(points), size=(5.6 * len(points), 4.4)) as (_, axes):
        for k, (name, panel) in enumerate(points.items()):
            ax = axes[0, k]
            for variant, x, x_sd, y, y_sd in panel:
                ax.errorbar(x, y, xerr=x_sd, yerr=y_sd, fmt="o", capsize=3, label=variant)
                ax.annotate(variant, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
            ax.set_xlabel(labels[name][0])
            ax.set_ylabel(labels[name][1])
            ax.set_title("stability vs plasticity (mean ± sd over seeds)", fontsize=9)
            ax.legend(fontsize=6)
    return True


def plasticity_section(figures: Path, variants: dict[str, Seeds], tasks: list[str], stages: list[str]) -> list[str]:
    """## Plasticity and stability: the table and the scatter (drawn here, so it is listed with the figures)."""
    if not stages or not finished(variants):
        return []
    drawn = stability_plasticity_plot(figures / SCATTER_FIGURE, variants, tasks, stages)
    first, last = stages[0], stages[-1]
    owners = task_owners(variants)
    note = (
        ""
        if owners
        else " Probe columns are n/a: these metrics have no `task_stage` block (written before it existed)."
    )
    return [
        "## Plasticity and stability",
        "",
        f"What each strategy learns of the new stage ({last}, right after it) beside what it keeps of the first "
        f"({first}, after {last}), mean ± sd over seeds. A task belongs to the stage trained on its cohort and "
        f"window.{note}",
        "",
        *plasticity_table(variants, tasks, stages),
        "",
        f"Scatter: [{SCATTER_FIGURE}](figures/{SCATTER_FIGURE}) (x: the new stage, y: the first stage after the "
        "last; sd error bars)."
        if drawn
        else "No stability-plasticity scatter: no strategy has both recon matrices.",
        "",
    ]
