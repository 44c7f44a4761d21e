"""The data side of params.yaml: `data` (demo cohorts), `ingest`, `window` and `quality`.

Each block is checked with the validator its stage uses (PhantomConfig for a demo cohort, Window for a
preset, cssl_core/config/quality.py for the quality gate, which the screen and quality stages import), so
`cssl check` refuses exactly what the stage would, minutes earlier. The quality settings are resolved per
ingested cohort, because DVC refuses a stage whose `quality.cohorts.<cohort>` entry is missing (and for every
other cohort with an entry, which `cssl screen --cohort` accepts as well).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.errors import MISSING, ConfigError, reused
from cssl_core.config.quality import cohort_override, effective_params, missing_entry
from cssl_core.demo import SOURCES

VOLUME_FORMATS = ("nii.gz", "nii")  # `cssl ingest --volume-format`
# `cssl ingest --executor` (cssl_core/ingest/executor.py parses it at run time; checked here too, so that `cssl check`
# refuses it before any stage runs, without importing the ingest package)
_DASK_ADDRESS = re.compile(r"^dask://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})$")


@dataclass(frozen=True)
class DemoCohort:
    """One built-in demo cohort: `source` phantom (with its PhantomConfig) or nsclc (no settings).

    `block` is the cohort's entry as params.yaml spells it (source included): the demo-data stage logs that to
    MLflow, not the PhantomConfig, whose defaults would add keys the file does not hold.
    """

    name: str
    source: str
    phantom: Any | None  # cssl_core.demo.phantom.PhantomConfig for source phantom
    block: Mapping[str, Any]

    def as_params(self) -> dict[str, Any]:
        """The cohort's block as params.yaml spells it (what DVC hashes for demo-data@<cohort>)."""
        return dict(self.block)


@dataclass(frozen=True)
class DataConfig:
    demo: Mapping[str, DemoCohort]


@dataclass(frozen=True)
class IngestConfig:
    cohorts: tuple[str, ...]
    workers: int
    volume_format: str
    executor: str  # processes | dask | dask://host:port (cssl_core/ingest/executor.py)


@dataclass(frozen=True)
class WindowConfig:
    apply: tuple[str, ...]
    presets: Mapping[str, Any]  # name -> cssl_core.windowing.Window
    size: int
    dtype: str

    def preset(self, name: str) -> Any:
        """The cssl_core.windowing.Window called `name`; an unknown name is the window stage's one-line KeyError."""
        if name not in self.presets:
            known = ", ".join(sorted(self.presets))
            raise KeyError(f"unknown window preset {name!r}; known presets: {known} (add it under window.presets)")
        return self.presets[name]


@dataclass(frozen=True)
class QualityConfig:
    """The gate's effective settings per cohort with a `quality.cohorts` entry (defaults, the block, then the
    cohort's entry); every ingested cohort has one."""

    cohorts: Mapping[str, Mapping[str, Any]]

    def settings(self, cohort: str) -> dict[str, Any]:
        """What the screen and quality stages apply to `cohort` (a fresh dict: they log it and pass it on)."""
        if cohort not in self.cohorts:
            raise missing_entry(cohort)
        return dict(self.cohorts[cohort])


def parse_data(block: Any) -> DataConfig:
    data = checks.mapping("data", block)
    checks.keys("data", data, ("demo",), required=("demo",))
    demo = checks.mapping("data.demo", data["demo"])
    cohorts = {}
    for cohort, entry in demo.items():
        path = f"data.demo.{cohort}"
        checks.name(path, cohort)
        settings = dict(checks.mapping(path, entry))
        source = checks.choice(f"{path}.source", settings.pop("source", MISSING), SOURCES)
        phantom = None
        if source == "phantom":
            from cssl_core.demo.phantom import PhantomConfig

            checks.keys(path, settings, ["source", *(f.name for f in fields(PhantomConfig))])
            with reused(path, settings):
                phantom = PhantomConfig.from_mapping(settings)
        elif settings:
            key = next(iter(settings))
            raise ConfigError(f"{path}.{key}", settings[key], f"source {source} takes no settings; remove {key}")
        cohorts[cohort] = DemoCohort(cohort, source, phantom, MappingProxyType(dict(entry)))
    return DataConfig(MappingProxyType(cohorts))


def parse_ingest(block: Any) -> IngestConfig:
    ingest = checks.mapping("ingest", block)
    known = ("cohorts", "workers", "volume_format", "executor")  # all read by dvc.yaml's ingest stage
    checks.keys("ingest", ingest, known, required=known)
    return IngestConfig(
        cohorts=checks.names("ingest.cohorts", ingest["cohorts"]),
        workers=checks.integer("ingest.workers", ingest["workers"], minimum=1),
        volume_format=checks.choice("ingest.volume_format", ingest["volume_format"], VOLUME_FORMATS),
        executor=parse_executor(ingest["executor"]),
    )


def parse_executor(value: Any, path: str = "ingest.executor") -> str:
    """`processes`, `dask` or `dask://host:port` (port 1-65535): where ingestion runs its per-series tasks."""
    if isinstance(value, str) and value in ("processes", "dask"):
        return value
    match = _DASK_ADDRESS.match(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match[2]) <= 65535:
        raise ConfigError(
            path,
            value,
            "choose processes (this machine's process pool), dask (a local Dask cluster) or "
            "dask://host:port (an existing Dask scheduler)",
        )
    return value


def parse_window(block: Any) -> WindowConfig:
    from cssl_core.windowing import STORED_DTYPES, Window

    window = checks.mapping("window", block)
    known = ("apply", "presets", "size", "dtype")  # all read by dvc.yaml's window stage
    checks.keys("window", window, known, required=known)
    raw_presets = checks.mapping("window.presets", window["presets"])
    presets = {}
    for preset, entry in raw_presets.items():
        path = f"window.presets.{preset}"
        checks.name(path, preset)
        values = checks.mapping(path, entry)
        checks.keys(path, values, ("width", "level"), required=("width", "level"))
        for key in ("width", "level"):
            if not checks.is_number(values[key]):
                raise ConfigError(f"{path}.{key}", values[key], f"{path}.{key} must be a number (HU)")
        with reused(path, values):
            presets[preset] = Window.from_preset(preset, raw_presets)
    apply = window["apply"]
    return WindowConfig(
        apply=checks.names("window.apply", apply, choices=list(presets), what="a preset of window.presets:"),
        presets=MappingProxyType(presets),
        size=checks.integer("window.size", window["size"], minimum=1),
        dtype=checks.choice("window.dtype", window["dtype"], STORED_DTYPES),
    )


def parse_quality(params: Mapping[str, Any], ingest: IngestConfig) -> QualityConfig:
    """The quality gate's rules (cssl_core.config.quality), applied to every cohort that will be screened, and to
    every entry; settings are resolved for every entry (a superset of ingest.cohorts)."""
    block = checks.mapping("quality", params.get("quality", MISSING))
    entries = checks.mapping("quality.cohorts", block.get("cohorts", MISSING))
    for cohort in ingest.cohorts:
        if cohort not in entries:
            raise ConfigError(
                f"quality.cohorts.{cohort}",
                MISSING,
                f"every cohort of ingest.cohorts needs an entry (DVC refuses the stage without one): add "
                f"`{cohort}: {{}}` under quality.cohorts ({{}} keeps the defaults)",
            )
    with reused("quality", block):
        for cohort in entries:
            cohort_override(block, cohort)
        effective = {cohort: MappingProxyType(effective_params(params, cohort)) for cohort in entries}
    return QualityConfig(MappingProxyType(effective))
