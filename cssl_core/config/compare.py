"""`compare`: the variants x seeds that `cssl compare` queues as DVC experiments.

Each run is params.yaml with a config's overrides and a variant's `-S key=value` settings on top (the order of
flows/compare.py `experiment_names`). A variant that would make a bad params.yaml fails every experiment it
queues, one after another; so `run_problems` validates each combination as the whole config it would run
with (`cssl compare` refuses, `cssl check` warns).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.errors import ConfigError, Shown

CONFIG_KEYS = ("extends", "seeds", "variants", "overrides", "jobs")


@dataclass(frozen=True)
class CompareRun:
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    overrides: Mapping[str, Any]  # dotted params key -> value
    jobs: int = 1  # experiments run side by side (DVC queue workers), each on cpus // jobs threads


@dataclass(frozen=True)
class CompareConfig:
    variants: Mapping[str, Mapping[str, Any]]  # name -> dotted params key -> value
    configs: Mapping[str, CompareRun]


def with_settings(params: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """params with `-S a.b.c=value` settings applied (DVC sets the nested key, creating blocks on the way). A
    non-empty block value is merged leaf by leaf, as `cssl compare` passes it to DVC (one `-S` per leaf), so
    `quality.cohorts: {extra: {}}` adds a cohort's entry beside the others instead of replacing them."""
    out = copy.deepcopy(dict(params))
    for dotted, value in leaf_settings(settings):
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ConfigError(dotted, value, f"{dotted} sets a key inside a value that is not a block")
        node[last] = copy.deepcopy(value)
    return out


def leaf_settings(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) per leaf of nested settings: an empty block is a leaf (it sets `{}`)."""
    leaves: list[tuple[str, Any]] = []
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            leaves += leaf_settings(value, f"{prefix}{key}.")
        else:
            leaves.append((f"{prefix}{key}", value))
    return leaves


def created_blocks(params: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """The blocks a setting creates because params lacks them (e.g. eval.tasks.<task> of a task params does not
    have): when such settings are refused, the missing block, not the key inside it, is what the user must fix."""
    created = []
    for dotted in settings:
        node: Any = params
        *parents, _ = dotted.split(".")
        for depth, key in enumerate(parents):
            if not isinstance(node, Mapping) or node.get(key) is None:
                created.append(".".join(parents[: depth + 1]))
                break
            node = node[key]
    return list(dict.fromkeys(created))


def _settings(path: str, value: Any) -> Mapping[str, Any]:
    block = checks.mapping(path, value, optional=True)
    for key in block:
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{path}.{key}", block[key], "keys are dotted params.yaml keys such as ssl.strategy")
    return block


def _extended(path: str, entry: Mapping[str, Any], configs: Mapping[str, Any]) -> dict[str, Any]:
    """`entry` on top of the config it `extends`: its own seeds, variants and jobs where given, and the parent's
    overrides with its own on top, so a config that runs a few variants on a benchmark restates nothing of it.
    One level only: a chain would hide which block a setting came from."""
    checks.keys(path, entry, CONFIG_KEYS)
    parent_name = entry.get("extends")
    if parent_name is None:
        return dict(entry)
    if parent_name not in configs or parent_name == path.rsplit(".", 1)[-1]:
        raise ConfigError(f"{path}.extends", parent_name, f"the name of another config: {sorted(configs)}")
    parent = checks.mapping(f"compare.configs.{parent_name}", configs[parent_name])
    if parent.get("extends") is not None:
        raise ConfigError(f"{path}.extends", parent_name, "a config that extends no other (one level only)")
    overrides = {**_settings(f"compare.configs.{parent_name}.overrides", parent.get("overrides")),
                 **_settings(f"{path}.overrides", entry.get("overrides"))}
    return {**parent, **entry, "overrides": overrides}


def config_entry(params: Mapping[str, Any], config: str) -> dict[str, Any]:
    """compare.configs.<config> as it runs: with the config it `extends` merged in. KeyError for an unknown name."""
    configs = params["compare"]["configs"]
    if config not in configs:
        raise KeyError(f"compare.configs has no {config!r} (have: {', '.join(configs)})")
    return _extended(f"compare.configs.{config}", configs[config], configs)


def parse_compare(block: Any) -> CompareConfig:
    """The block's shape: settings keyed by dotted params keys, integer seeds, variants that exist."""
    compare = checks.mapping("compare", block, optional=True)
    checks.keys("compare", compare, ("variants", "configs"))
    variants = {
        name: _settings(f"compare.variants.{name}", value)
        for name, value in checks.mapping("compare.variants", compare.get("variants"), optional=True).items()
    }
    configs = {}
    raw = checks.mapping("compare.configs", compare.get("configs"), optional=True)
    for name, value in raw.items():
        path = f"compare.configs.{name}"
        entry = _extended(path, checks.mapping(path, value), raw)
        if "seeds" not in entry:
            raise ConfigError(f"{path}.seeds", None, "a non-empty list of integer seeds, e.g. [0, 1, 2]")
        seeds = entry["seeds"]
        if not isinstance(seeds, list | tuple) or not seeds:
            raise ConfigError(f"{path}.seeds", seeds, "a non-empty list of integer seeds, e.g. [0, 1, 2]")
        for position, seed in enumerate(seeds):
            checks.integer(f"{path}.seeds[{position}]", seed)
        chosen = checks.names(f"{path}.variants", entry.get("variants", list(variants)), choices=variants)
        overrides = _settings(f"{path}.overrides", entry.get("overrides"))
        jobs = checks.integer(f"{path}.jobs", entry.get("jobs", 1), minimum=1)
        configs[name] = CompareRun(tuple(seeds), chosen, MappingProxyType(dict(overrides)), jobs)
    return CompareConfig(
        MappingProxyType({k: MappingProxyType(dict(v)) for k, v in variants.items()}), MappingProxyType(configs)
    )


def run_problems(
    params: Mapping[str, Any],
    compare: CompareConfig,
    validate: Callable[[Mapping[str, Any]], Any],
    only: str | None = None,
) -> list[ConfigError]:
    """What would refuse the runs of every config (or of config `only`): each variant alone, each config's overrides
    alone, then each config's combinations (the first failing one per config), so an error blames the smallest
    block that causes it. Not part of ProjectConfig: a config for other hardware (gpu) may not fit this
    params.yaml's model, which must not stop the pipeline itself."""
    configs = {only: compare.configs[only]} if only in compare.configs else ({} if only else dict(compare.configs))
    results: dict[str, ConfigError | None] = {}

    def attempt(path: str, shown: Any, settings: Mapping[str, Any], context: str) -> ConfigError | None:
        key = json.dumps(settings, sort_keys=True, default=str)
        if key not in results:
            try:
                validate(with_settings(params, settings))
                results[key] = None
            except ConfigError as error:
                created = created_blocks(params, settings)
                missing = (
                    f"params.yaml has no {', '.join(created)} (a setting here would create it): drop that setting or "
                    f"add the block; " if created else ""
                )
                results[key] = ConfigError(path, shown, f"{missing}{context} {error.bare()}")
        return results[key]

    problems: list[ConfigError] = []
    used = list(dict.fromkeys(v for run in configs.values() for v in run.variants))
    broken = set()
    for name in used:
        settings = compare.variants[name]
        problem = attempt(f"compare.variants.{name}", dict(settings), settings, "applied to params.yaml it gives")
        if problem:
            problems.append(problem)
            broken.add(name)
    for name, run in configs.items():
        overrides = dict(run.overrides)
        problem = attempt(f"compare.configs.{name}.overrides", overrides, overrides, "applied to params.yaml they give")
        for variant in [] if problem else [v for v in run.variants if v not in broken]:
            problem = attempt(
                f"compare.configs.{name}",
                Shown(f"variant {variant!r}"),
                {**overrides, **compare.variants[variant]},
                "with this config's overrides the variant gives",
            )
            if problem:
                break
        if problem:
            problems.append(problem)
    return problems
