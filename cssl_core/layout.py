"""Where every pipeline file lives under data/, and the continual schedule's prev-chain.

One module spells the layout so that the stage code, the CLI's defaults and the readers of finished DVC
experiments agree with each other and with dvc.yaml (which spells the same layout with `${item.prev}` and
friends). Paths are relative to the project root, where DVC runs every stage. Torch-free: the CLI and the
whole-params check import it before any stage code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INIT = "init"  # the random encoder every continual schedule starts from (`prev: init`)
DATA = Path("data")

RAW = DATA / "raw"  # DICOM per cohort (demo-data writes it, or a site puts its own there)
INTERIM = DATA / "interim"  # ingest: HU volumes, manifest and per-file accounting per cohort
QUALITY = DATA / "quality"  # screen and quality reports
WINDOWED = DATA / "windowed"  # training-ready slices per cohort and window
MODELS = DATA / "models"
BUFFERS = DATA / "buffers"
CHECKPOINTS = DATA / "checkpoints"
METRICS = DATA / "metrics"  # per-stage run records (timings): `cache: false`, no stage lists them as a dep
PRIVACY = DATA / "privacy"  # audit reports and figures
EVAL = DATA / "eval"  # one evaluation row per stage
REPORT = DATA / "report"  # figures (a cached DVC output)
SUMMARY = DATA / "summary"  # metrics and plot data: small, git-tracked (cache: false), kept by DVC experiments
SUMMARY_METRICS = SUMMARY / "metrics.json"
SPLIT_FILE = "split.json"  # in a stage's model directory


# `root`: the CLI lets a user point the data stages at other folders; the names inside stay these.


def raw_dir(cohort: str, root: Path = RAW) -> Path:
    return root / cohort


def interim_dir(cohort: str, root: Path = INTERIM) -> Path:
    return root / cohort


def windowed_dir(cohort: str, window: str, root: Path = WINDOWED) -> Path:
    return root / f"{cohort}-{window}"


def screen_report(cohort: str, root: Path = QUALITY) -> Path:
    """The series screen's report of one cohort (a git-tracked DVC metric)."""
    return root / f"{cohort}.screen.json"


def passed_list(cohort: str, root: Path = QUALITY) -> Path:
    """The series of one cohort that passed the screen: the only thing the window stage reads from it."""
    return root / f"{cohort}.passed.json"


def quality_report(cohort: str, window: str, root: Path = QUALITY) -> Path:
    """The quality gate's report of one windowed cohort."""
    return root / f"{cohort}-{window}.json"


def model_dir(stage: str) -> Path:
    return MODELS / stage


def buffer_dir(stage: str) -> Path:
    return BUFFERS / stage


def checkpoints_dir(stage: str) -> Path:
    return CHECKPOINTS / stage


def metrics_path(kind: str, stage: str, suffix: str = ".json") -> Path:
    """A stage's run record, e.g. data/metrics/pretrain-s1.json or pretrain-s1-history.csv (suffix)."""
    return METRICS / f"{kind}-{stage}{suffix}"


def privacy_report(stage: str) -> Path:
    return PRIVACY / f"{stage}.json"


def privacy_verdict(stage: str) -> Path:
    """gate@<stage>'s verdict on the audit report: thresholds, checked figures, reasons."""
    return PRIVACY / f"{stage}.gate.json"


def privacy_clearance(stage: str) -> Path:
    """What the next stage and evaluation depend on instead of the verdict: present, with the same content,
    whenever the gate lets the buffer be used, so a threshold edit that keeps it usable retrains nothing."""
    return PRIVACY / f"{stage}.cleared.json"


def privacy_figure(stage: str) -> Path:
    return PRIVACY / f"{stage}.png"


def eval_row(stage: str) -> Path:
    return EVAL / f"{stage}.json"


class StageLoopError(ValueError):
    """A prev-chain that comes back to a stage it passed; `cycle` is the loop, first stage repeated at the end."""

    def __init__(self, name: str, cycle: list[str]) -> None:
        super().__init__(f"continual.stages.{name}: prev chain reaches {cycle[-1]!r}, which is not a stage or loops")
        self.cycle = cycle


def _prev(entry: Any) -> str:
    return entry["prev"] if isinstance(entry, Mapping) else entry.prev


def stage_chain(stages: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The stages from the first one up to `name`, in training order (init excluded; () for init itself).

    `stages` is params.yaml's `continual.stages` (name -> block with `prev`) or anything whose values have a
    `.prev` (cssl_core.config's StageConfig): the one walk of the prev-chain, shared by the config check (cycles,
    order) and the stages (a stage's index, what it follows). Raises KeyError for a stage that is not in
    `stages` and StageLoopError (a ValueError) for a chain that loops.
    """
    seen: list[str] = []
    while name != INIT:
        if name in seen:
            raise StageLoopError(seen[0], seen[seen.index(name) :] + [name])
        if name not in stages:
            if not seen:
                raise KeyError(
                    f"no continual stage {name!r} in params.yaml continual.stages (known: {', '.join(stages)})"
                )
            raise ValueError(f"continual.stages.{seen[0]}: prev chain reaches {name!r}, which is not a stage or loops")
        seen.append(name)
        name = _prev(stages[name])
    return tuple(reversed(seen))


@dataclass(frozen=True)
class StagePaths:
    """One continual stage's inputs and outputs (dvc.yaml's pretrain@, export@, audit@ and evaluate@<stage>)."""

    name: str
    prev: str
    cohort: str
    window: str
    index: int  # 0 for the first continual stage

    @property
    def windowed(self) -> Path:
        return windowed_dir(self.cohort, self.window)

    @property
    def model(self) -> Path:
        return model_dir(self.name)

    @property
    def split(self) -> Path:
        """The stage's train/val row split, saved beside its model (evaluation and export hold out the same)."""
        return model_dir(self.name) / SPLIT_FILE

    @property
    def prev_model(self) -> Path:
        return model_dir(self.prev)

    @property
    def buffer(self) -> Path:
        return buffer_dir(self.name)

    @property
    def prev_buffer(self) -> Path:
        return buffer_dir(self.prev)

    @property
    def checkpoints(self) -> Path:
        return checkpoints_dir(self.name)

    @property
    def privacy_report(self) -> Path:
        return privacy_report(self.name)

    @property
    def privacy_verdict(self) -> Path:
        return privacy_verdict(self.name)

    @property
    def privacy_clearance(self) -> Path:
        return privacy_clearance(self.name)

    @property
    def privacy_figure(self) -> Path:
        return privacy_figure(self.name)

    @property
    def eval_row(self) -> Path:
        return eval_row(self.name)

    def metrics(self, kind: str, suffix: str = ".json") -> Path:
        return metrics_path(kind, self.name, suffix)


def stage_paths(params: Mapping[str, Any], name: str) -> StagePaths:
    """The paths of continual stage `name` of params.yaml; a clear error for an unknown stage, an incomplete
    block or a prev-chain that does not end at init."""
    stages = params.get("continual", {}).get("stages", {})
    if name not in stages:
        raise KeyError(f"no continual stage {name!r} in params.yaml continual.stages (known: {', '.join(stages)})")
    block = stages[name]
    missing = [k for k in ("prev", "cohort", "window") if k not in block]
    if missing:
        raise KeyError(f"continual.stages.{name} lacks {missing}; each stage needs prev, cohort and window")
    index = len(stage_chain(stages, name)) - 1
    return StagePaths(
        name=name, prev=str(block["prev"]), cohort=str(block["cohort"]), window=str(block["window"]), index=index
    )
