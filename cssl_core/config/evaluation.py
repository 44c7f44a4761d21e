"""`eval`: label-free forgetting and the downstream probes of evaluate@<stage>.

A task whose cohort is not ingested or whose window is not applied has no data/windowed/<cohort>-<window>;
evaluate@<stage> would find that out only after every stage has trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.errors import ConfigError
from cssl_core.evaluation.probe_names import PROBE_NAMES, FinetuneBudget

LOO = "loo"  # leave one patient out (cssl_core.evaluation.splits.patient_folds)
EVAL_KEYS = ("recon_slices", "seed", "probes", "fractions", "folds", "tasks", "register", "finetune")
REQUIRED_KEYS = EVAL_KEYS[:-2]  # register and finetune are optional (older params files lack them)
FINETUNE_KEYS = ("steps", "batch_size", "lr", "head_lr")
TASK_KEYS = ("cohort", "window", "label", "mask_class", "folds", "stage")
REQUIRED_TASK_KEYS = TASK_KEYS[:4]


@dataclass(frozen=True)
class EvalTask:
    name: str
    cohort: str
    window: str
    label: str  # a column of the windowed index.parquet, e.g. has_ggo
    mask_class: int  # its class in masks.npy, for the token probe
    folds: int | str | None  # None: eval.folds
    # the stage whose knowledge the task measures, when its cohort is held-out patients of the stage's kind rather
    # than the stage's own cohort (None: the stage that trains on the task's cohort and window, if any)
    stage: str | None = None

    def as_params(self) -> dict[str, Any]:
        """The task's block as params.yaml spells it (folds only where the task sets its own)."""
        block: dict[str, Any] = {
            "cohort": self.cohort,
            "window": self.window,
            "label": self.label,
            "mask_class": self.mask_class,
        }
        if self.folds is not None:
            block["folds"] = self.folds
        if self.stage is not None:
            block["stage"] = self.stage
        return block


@dataclass(frozen=True)
class EvalConfig:
    recon_slices: int
    seed: int
    probes: tuple[str, ...]
    # as written (an int 1 stays 1): the eval rows and the report key results by str(fraction), "1" is not "1.0"
    fractions: tuple[float, ...]
    folds: int | str
    tasks: Mapping[str, EvalTask]
    register: bool  # report registers the final encoder in MLflow
    keys: tuple[str, ...]  # the keys params.yaml sets, in its order (register and finetune are optional)
    finetune: FinetuneBudget = FinetuneBudget()  # the finetune probe's budget; defaults when not written

    def as_params(self) -> dict[str, Any]:
        """The block as params.yaml spells it: evaluate@<stage> logs it as its MLflow params, as it always has."""
        values = {
            "recon_slices": self.recon_slices,
            "seed": self.seed,
            "probes": list(self.probes),
            "fractions": list(self.fractions),
            "folds": self.folds,
            "tasks": {name: task.as_params() for name, task in self.tasks.items()},
            "register": self.register,
            "finetune": self.finetune.as_params(),
        }
        return {key: values[key] for key in self.keys}


def _folds(path: str, value: Any) -> int | str:
    """patient_folds' rule: an int >= 2 or "loo" (it checks only once it has the patients)."""
    if value == LOO:
        return LOO
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(path, value, f"{path} must be an integer >= 2 or {LOO} (leave one patient out)")
    return value


def _finetune(block: Any) -> FinetuneBudget:
    """`eval.finetune`: every key optional (FinetuneBudget's defaults), unknown keys refused by name."""
    path = "eval.finetune"
    values = checks.mapping(path, block)
    checks.keys(path, values, FINETUNE_KEYS)
    default = FinetuneBudget()
    return FinetuneBudget(
        steps=checks.integer(f"{path}.steps", values.get("steps", default.steps), minimum=1),
        batch_size=checks.integer(f"{path}.batch_size", values.get("batch_size", default.batch_size), minimum=2),
        lr=checks.number(f"{path}.lr", values.get("lr", default.lr), 0.0, 1.0, low_open=True),
        head_lr=checks.number(f"{path}.head_lr", values.get("head_lr", default.head_lr), 0.0, 1.0, low_open=True),
    )


def _stage(path: str, value: Any, window: str, stage_windows: Mapping[str, str]) -> str:
    stage = checks.choice(path, value, stage_windows, what="a stage of continual.stages:")
    if stage_windows[stage] != window:
        raise ConfigError(
            path, value, f"stage {stage} trains in the {stage_windows[stage]} window, the task is in {window}: a task "
            f"measures its stage's knowledge in that stage's window (drop `stage` or fix the task's window)"
        )
    return stage


def parse_eval(
    block: Any, cohorts: tuple[str, ...], windows: tuple[str, ...], stage_windows: Mapping[str, str]
) -> EvalConfig:
    """`stage_windows` (stage -> its window) checks a task's `stage`: a stage of continual.stages, in the task's
    window (a task in another window does not measure what that stage learnt)."""
    evaluation = checks.mapping("eval", block)
    checks.keys("eval", evaluation, EVAL_KEYS, required=REQUIRED_KEYS)
    fractions = evaluation["fractions"]
    if not isinstance(fractions, list | tuple) or not fractions:
        raise ConfigError("eval.fractions", fractions, "eval.fractions must be a non-empty list of fractions in (0, 1]")
    for position, fraction in enumerate(fractions):  # the range is few_shot's (cssl_core.evaluation.splits)
        checks.number(f"eval.fractions[{position}]", fraction, 0.0, 1.0, low_open=True)
    tasks = {}
    for task, entry in checks.mapping("eval.tasks", evaluation["tasks"]).items():
        path = f"eval.tasks.{task}"
        checks.name(path, task)
        values = checks.mapping(path, entry)
        checks.keys(path, values, TASK_KEYS, required=REQUIRED_TASK_KEYS)
        cohort = checks.choice(f"{path}.cohort", values["cohort"], cohorts, what="an ingested cohort (ingest.cohorts):")
        window = checks.choice(f"{path}.window", values["window"], windows, what="an applied window (window.apply):")
        label = values["label"]
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{path}.label", label, "a label column of the windowed index, e.g. has_ggo")
        tasks[task] = EvalTask(
            name=task,
            cohort=cohort,
            window=window,
            label=label,
            mask_class=checks.integer(f"{path}.mask_class", values["mask_class"], minimum=0),
            folds=_folds(f"{path}.folds", values["folds"]) if "folds" in values else None,
            stage=_stage(f"{path}.stage", values["stage"], window, stage_windows) if "stage" in values else None,
        )
    return EvalConfig(
        recon_slices=checks.integer("eval.recon_slices", evaluation["recon_slices"], minimum=1),
        seed=checks.integer("eval.seed", evaluation["seed"]),
        probes=checks.names("eval.probes", evaluation["probes"], choices=PROBE_NAMES, what="one of the probes"),
        fractions=tuple(fractions),
        folds=_folds("eval.folds", evaluation["folds"]),
        tasks=MappingProxyType(tasks),
        register=checks.boolean("eval.register", evaluation.get("register", True)),
        keys=tuple(evaluation),
        finetune=_finetune(evaluation["finetune"]) if "finetune" in evaluation else FinetuneBudget(),
    )
