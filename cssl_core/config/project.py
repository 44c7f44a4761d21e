"""ProjectConfig: all of params.yaml, checked as one before any stage runs.

Why one object: most mistakes in params.yaml are between sections (a stage training on a cohort that is not
ingested, an eval task in a window that is not applied, the audit's attacker cohort being trained on, a
window size the model does not take). Each stage reads only its own keys, so each of these used to surface as
a missing path or a traceback when DVC reached the one stage that noticed. Sections are checked cheapest
first: the schedule and the data settings need no torch, so those mistakes fail in under a second; the
ssl/replay/privacy validators import torch and MONAI (cssl_core.models' package imports the MAE, which imports
MONAI: several seconds on a loaded CPU) and run last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cssl_core.config import checks
from cssl_core.config.compare import CompareConfig, parse_compare, run_problems
from cssl_core.config.continual import ContinualConfig, parse_continual
from cssl_core.config.data import (
    DataConfig,
    IngestConfig,
    QualityConfig,
    WindowConfig,
    parse_data,
    parse_ingest,
    parse_quality,
    parse_window,
)
from cssl_core.config.errors import SOURCE, ConfigError
from cssl_core.config.evaluation import EvalConfig, parse_eval
from cssl_core.config.privacy import PrivacyConfig, check_attacker, parse_privacy
from cssl_core.config.replay import REPLAY_KEYS, ReplayConfig, parse_replay
from cssl_core.config.ssl import SSL_KEYS, SSLConfig, parse_ssl

SECTIONS = ("data", "ingest", "window", "quality", "continual", "ssl", "replay", "privacy", "eval", "compare")
OPTIONAL_SECTIONS = ("compare",)


@dataclass(frozen=True)
class ProjectConfig:
    """Every section of params.yaml, validated; build it with `ProjectConfig.from_params(params)`."""

    data: DataConfig
    ingest: IngestConfig
    window: WindowConfig
    quality: QualityConfig
    continual: ContinualConfig
    ssl: SSLConfig
    replay: ReplayConfig
    privacy: PrivacyConfig
    eval: EvalConfig
    compare: CompareConfig | None

    @classmethod
    def from_params(cls, params: Any, source: str = SOURCE) -> ProjectConfig:
        """Validate a loaded params.yaml; any problem is one ConfigError whose line starts with `source`."""
        try:
            return _build(params)
        except ConfigError as error:
            error.source = source
            raise

    def summary(self) -> str:
        """One line for `cssl check`: the schedule and the choices that decide what a run does."""
        stages = self.continual.stages
        schedule = ", ".join(f"{name} <- {stages[name].prev}" for name in self.continual.order)
        privacy = self.replay.privacy.mode
        parts = [
            f"{len(stages)} stage{'s' if len(stages) != 1 else ''}: {schedule}",
            f"strategy {self.ssl.strategy}",
            f"preset {self.ssl.preset} ({self.ssl.model.img_size}px)",
            f"cohorts {', '.join(self.ingest.cohorts)} x windows {', '.join(self.window.apply)}",
            f"replay {self.replay.selection} budget {self.replay.budget} (privacy {privacy})",
            f"audit with {self.privacy.attacker_cohort} (gate {self.privacy.gate['mode']})",
            f"{len(self.eval.tasks)} eval tasks",
        ]
        if self.compare is not None:
            parts.append(f"{len(self.compare.variants)} compare variants in {len(self.compare.configs)} configs")
        return "; ".join(parts)


def _build(params: Any) -> ProjectConfig:
    root = checks.mapping("", params)
    checks.keys("", root, SECTIONS, required=[s for s in SECTIONS if s not in OPTIONAL_SECTIONS])
    # no torch needed: fails in a fraction of a second (the schedule first: the most common mistakes)
    ingest = parse_ingest(root["ingest"])
    window = parse_window(root["window"])
    quality = parse_quality(root, ingest)
    continual = parse_continual(root["continual"], ingest.cohorts, window.apply)
    stage_windows = {name: continual.paths(name).window for name in continual.stages}
    evaluation = parse_eval(root["eval"], ingest.cohorts, window.apply, stage_windows)
    check_attacker(root["privacy"], continual, ingest.cohorts)
    checks.keys("ssl", checks.mapping("ssl", root["ssl"]), SSL_KEYS)
    checks.keys("replay", checks.mapping("replay", root["replay"]), REPLAY_KEYS)
    data = parse_data(root["data"])  # imports the phantom generator (pydicom): a few tenths of a second
    # the reused validators of the training side import torch and MONAI
    ssl = parse_ssl(root["ssl"], continual)
    if window.size != ssl.model.img_size:
        raise ConfigError(
            "window.size",
            window.size,
            f"the model (ssl.preset {ssl.preset} with ssl.model) takes {ssl.model.img_size}px slices: set "
            f"window.size to {ssl.model.img_size} or ssl.model.img_size to {window.size}",
        )
    replay = parse_replay(root["replay"], ssl.strategy, ssl.strategy_options)
    privacy = parse_privacy(root["privacy"], continual, ingest.cohorts)
    compare = parse_compare(root["compare"]) if "compare" in root else None
    return ProjectConfig(data, ingest, window, quality, continual, ssl, replay, privacy, evaluation, compare)


def compare_problems(params: Mapping[str, Any], only: str | None = None, source: str = SOURCE) -> list[ConfigError]:
    """Why runs of `cssl compare` (every config, or config `only`) would be refused, one error per variant or
    config at fault; params itself must be valid (ProjectConfig.from_params raises otherwise)."""
    config = ProjectConfig.from_params(params, source=source)
    if config.compare is None:
        return []
    problems = run_problems(params, config.compare, _build, only=only)
    for problem in problems:
        problem.source = source
    return problems
