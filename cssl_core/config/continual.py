"""`continual.stages`: the schedule as a checked chain of stages.

Why checked here: dvc.yaml turns each stage into pretrain@/export@/audit@/evaluate@<stage> whose inputs are
`data/models/<prev>` and `data/windowed/<cohort>-<window>`. A `prev` that names no stage, a cycle, or a
cohort/window no stage produces is otherwise found only when DVC reaches the stage (a missing path, or DVC's
own cycle error), after everything upstream has run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.errors import ConfigError
from cssl_core.layout import INIT, StageLoopError, StagePaths, stage_chain

STAGE_KEYS = ("prev", "cohort", "window", "train", "augment")


@dataclass(frozen=True)
class StageConfig:
    """One continual stage: trains on data/windowed/<cohort>-<window>, starting from data/models/<prev>.

    `train_overrides` are the stage's own `train: {...}` knobs over ssl.train (validated with them, see
    ProjectConfig.stage_train); `augment` is the stage's own ssl.augment (None: ssl.augment's), checked with
    it in cssl_core.config.ssl. A stage of its own setting exists because the `cpu` benchmark wants both: an
    augmented first stage (an encoder that beats a random one) and a plain second one (augmentation hides
    forgetting).
    """

    name: str
    prev: str
    cohort: str
    window: str
    train_overrides: Mapping[str, Any]
    augment: str | None = None

    def as_params(self) -> dict[str, Any]:
        """The stage's block as params.yaml spells it (what DVC and the checkpoint fingerprint hash)."""
        block: dict[str, Any] = {"prev": self.prev, "cohort": self.cohort, "window": self.window}
        if self.train_overrides:
            block["train"] = dict(self.train_overrides)
        if self.augment is not None:
            block["augment"] = self.augment
        return block


@dataclass(frozen=True)
class ContinualConfig:
    stages: Mapping[str, StageConfig]
    order: tuple[str, ...]  # training order: every stage after its prev (ties in params.yaml order)

    def chain(self, name: str) -> tuple[str, ...]:
        """The stages from the first one up to `name`, in training order (init excluded)."""
        return stage_chain(self.stages, name)

    def ordered_stages(self) -> list[str]:
        """The stages of the longest prev-chain, in training order: the rows and columns of the report's R
        matrices (a schedule that branches reports its longest branch; the first one in params.yaml on a tie)."""
        return list(max((self.chain(name) for name in self.stages), key=len))

    def paths(self, name: str) -> StagePaths:
        """Where stage `name` reads and writes (its index is its place in the prev-chain); the chain is walked
        first so an unknown stage is stage_chain's one-line KeyError naming the known ones."""
        index = len(self.chain(name)) - 1
        stage = self.stages[name]
        return StagePaths(name, stage.prev, stage.cohort, stage.window, index=index)


def _cycle_from(name: str, stages: Mapping[str, Mapping[str, Any]]) -> list[str] | None:
    try:
        stage_chain(stages, name)
    except StageLoopError as loop:
        return loop.cycle
    return None


def parse_continual(block: Any, cohorts: tuple[str, ...], windows: tuple[str, ...]) -> ContinualConfig:
    """The schedule; `cohorts` (ingest.cohorts) and `windows` (window.apply) are what the data stages produce."""
    continual = checks.mapping("continual", block)
    checks.keys("continual", continual, ("stages",), required=("stages",))
    raw = checks.mapping("continual.stages", continual["stages"])
    if not raw:
        raise ConfigError("continual.stages", dict(raw), "at least one stage is needed, e.g. s1: {prev: init, ...}")
    for stage, entry in raw.items():
        path = f"continual.stages.{stage}"
        checks.name(path, stage)
        if stage == INIT:
            raise ConfigError(
                path, stage, f"{INIT!r} is the random encoder every schedule starts from; rename the stage"
            )
        values = checks.mapping(path, entry)
        checks.keys(path, values, STAGE_KEYS, required=("prev", "cohort", "window"))
        others = [INIT, *(s for s in raw if s != stage)]
        checks.choice(f"{path}.prev", values["prev"], others, what="prev must be init or another stage:")
        checks.choice(
            f"{path}.cohort", values["cohort"], cohorts, what="a stage trains on an ingested cohort (ingest.cohorts):"
        )
        checks.choice(
            f"{path}.window", values["window"], windows, what="a stage trains on an applied window (window.apply):"
        )
        checks.mapping(f"{path}.train", values.get("train"), optional=True)
    for stage in raw:
        cycle = _cycle_from(stage, raw)
        if cycle:
            loop = " <- ".join(cycle)
            waits = " and ".join(f"pretrain@{s}" for s in cycle[:-1])
            raise ConfigError(
                f"continual.stages.{cycle[0]}.prev",
                raw[cycle[0]]["prev"],
                f"{loop} is a cycle ({waits} would each wait for the other); give every stage a prev that is "
                f"{INIT} or an earlier stage",
            )
    stages = {
        stage: StageConfig(
            name=stage,
            prev=entry["prev"],
            cohort=entry["cohort"],
            window=entry["window"],
            train_overrides=MappingProxyType(dict(entry.get("train") or {})),
            augment=entry.get("augment"),
        )
        for stage, entry in raw.items()
    }
    order: list[str] = []
    while len(order) < len(stages):  # no cycle, so every pass places at least one stage
        order += [s for s, c in stages.items() if s not in order and (c.prev == INIT or c.prev in order)]
    return ContinualConfig(MappingProxyType(stages), tuple(order))
