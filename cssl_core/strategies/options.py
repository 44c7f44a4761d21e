"""Every strategy's options (names, defaults, value rules) and buffer facts, importable without torch.

Why a module of its own: params.yaml is validated as a whole before every stage command (cssl_core.config,
`cssl check`), and most stages (ingest, screen, window, quality, ...) never need torch. Reading a strategy's
options from its class meant importing torch and MONAI (~5 s) first. The strategy classes take their
`required_options`, `default_options`, `buffer_kind` and `buffer_selection` from the specs below and run the
same rule functions in their constructors, so a params block `cssl check` accepts is one the class accepts,
with the same message when it does not (tests/cssl_core/strategies/test_options.py holds the two together).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# The keyword options of each WKD mode with their defaults: the signatures of cssl_core.distill.wkd's
# wkd_gaussian, wkd_ot and wkd_sliced (which need torch), in the order of its WKD_MODES.
WKD_MODE_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "gaussian": MappingProxyType({"eps": 1e-6}),
        "ot": MappingProxyType({"solver": "emd", "reg": 0.05, "over": "samples", "max_iter": None, "stop_thr": 1e-6}),
        "sliced": MappingProxyType({"n_projections": 64, "seed": 0, "over": "samples"}),
    }
)
WKD_CHOICES = (*WKD_MODE_OPTIONS, "none")  # latent_replay's `wkd`; none: plain feature MSE

Rule = Callable[[Mapping[str, Any]], None]


def check_count(value: object, name: str, *, allow_none: bool = False) -> None:
    """Options come from params.yaml: a float or bool batch size is a config error, not something to round."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")


def check_nonnegative(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0.0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def resolve_options(
    name: str, required: tuple[str, ...], defaults: Mapping[str, Any], options: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The defaults with `options` on top; a missing required or an unknown option is an error (solo-learn style:
    a typo in a params block must fail at construction, not silently run a whole stage on a default)."""
    given = dict(options or {})
    missing = [key for key in required if key not in given]
    allowed = set(required) | set(defaults)
    unknown = sorted(set(given) - allowed)
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing required option(s) {missing}")
        if unknown:
            problems.append(f"unknown option(s) {unknown}")
        raise ValueError(f"strategy {name!r}: " + "; ".join(problems) + f"; allowed: {sorted(allowed)}")
    return {**defaults, **given}


def check_replay_options(options: Mapping[str, Any]) -> None:
    """Every replay strategy (ReplayStrategy): replay_batch_size, when it has one."""
    if "replay_batch_size" in options:
        check_count(options["replay_batch_size"], "replay_batch_size", allow_none=True)


def check_joint_options(options: Mapping[str, Any]) -> None:
    check_count(options["max_replay_batch"], "max_replay_batch")
    check_count(options["new_stage_size"], "new_stage_size", allow_none=True)


def check_der_options(options: Mapping[str, Any]) -> None:
    check_nonnegative(options["alpha"], "alpha")
    check_nonnegative(options["beta"], "beta")


def check_medcoss_options(options: Mapping[str, Any]) -> None:
    check_nonnegative(options["lambda_distill"], "lambda_distill")


def check_latent_replay_options(options: Mapping[str, Any]) -> None:
    o = options
    if o["wkd"] not in WKD_CHOICES:
        raise ValueError(f"wkd must be one of {WKD_CHOICES}, got {o['wkd']!r}")
    if not isinstance(o["wkd_options"], Mapping):
        raise ValueError(f"wkd_options must be a mapping, got {o['wkd_options']!r}")
    if o["wkd"] == "none" and o["wkd_options"]:
        raise ValueError("wkd_options are given but wkd is 'none' (plain MSE takes no options)")
    if o["wkd"] != "none":
        allowed = WKD_MODE_OPTIONS[o["wkd"]]
        unknown = sorted(set(o["wkd_options"]) - set(allowed))
        if unknown:
            raise ValueError(f"unknown wkd_options {unknown} for mode {o['wkd']!r}; it accepts {sorted(allowed)}")
    for flag in ("bke", "replay", "unfreeze_lower"):
        if not isinstance(o[flag], bool):
            raise ValueError(f"{flag} must be true or false, got {o[flag]!r}")
    check_nonnegative(o["lambda_wkd"], "lambda_wkd")
    check_nonnegative(o["lambda_decoder"], "lambda_decoder")
    if not 0.0 <= float(o["bke_omega"]) < 1.0:
        raise ValueError(f"bke_omega must be in [0, 1), got {o['bke_omega']!r}")
    if not float(o["bke_tau"]) > 0.0:
        raise ValueError(f"bke_tau must be > 0, got {o['bke_tau']!r}")


@dataclass(frozen=True)
class StrategyOptions:
    """One registered strategy's option schema, its rules, and what its buffer is (for checks of other blocks:
    replay.selection_options must suit the selector a strategy forces)."""

    name: str
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()  # run in order on the resolved options, as the class constructors run them
    buffer_kind: str = "none"  # none | latent | image: what export@k writes after stage k
    buffer_selection: str | None = None  # forced selector (medcoss: kmeans); None: replay.selection
    replay_switch: str | None = None  # a boolean option that turns replay off (latent_replay's `replay`)

    def validate(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The resolved options (defaults + `options`), or the ValueError the strategy's constructor raises."""
        resolved = resolve_options(self.name, self.required, self.defaults, options)
        for rule in self.rules:
            rule(resolved)
        return resolved

    def replays(self, resolved: Mapping[str, Any]) -> bool:
        """Whether these (resolved) options replay a buffer at all: Strategy.replays without the class."""
        if self.buffer_kind == "none":
            return False
        return self.replay_switch is None or bool(resolved[self.replay_switch])


STRATEGY_OPTIONS: Mapping[str, StrategyOptions] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            StrategyOptions("finetune", {"mask_ratio": None}),  # None: the model's configured ratio
            StrategyOptions(
                "joint",
                {"mask_ratio": None, "replay_batch_size": None, "max_replay_batch": 256, "new_stage_size": None},
                rules=(check_replay_options, check_joint_options),
                buffer_kind="image",
            ),
            StrategyOptions(
                "er",
                {"mask_ratio": None, "replay_batch_size": 32},
                rules=(check_replay_options,),
                buffer_kind="image",
            ),
            StrategyOptions(
                "der",
                {"mask_ratio": None, "alpha": 0.5, "beta": 1.0, "replay_batch_size": 32},
                rules=(check_replay_options, check_der_options),
                buffer_kind="image",
            ),
            StrategyOptions(
                "medcoss",
                {"mask_ratio": None, "lambda_distill": 1.0, "replay_batch_size": 32},
                rules=(check_replay_options, check_medcoss_options),
                buffer_kind="image",
                buffer_selection="kmeans",
            ),
            StrategyOptions(
                "latent_replay",
                {
                    "mask_ratio": None,
                    "wkd": "gaussian",
                    "wkd_options": {},
                    "lambda_wkd": 1.0,
                    "bke": True,
                    "bke_omega": 0.5,
                    "bke_tau": 0.1,
                    "replay": True,
                    "replay_batch_size": 32,
                    "unfreeze_lower": False,
                    "lambda_decoder": 0.0,
                },
                rules=(check_replay_options, check_latent_replay_options),
                buffer_kind="latent",
                replay_switch="replay",
            ),
        )
    }
)
STRATEGY_NAMES = tuple(STRATEGY_OPTIONS)  # the order of cssl_core.strategies.STRATEGIES


def strategy_options(name: str) -> StrategyOptions:
    """The spec of strategy `name`; an unknown name is the KeyError `build_strategy` raises."""
    if name not in STRATEGY_OPTIONS:
        raise KeyError(f"unknown strategy {name!r}; registered: {sorted(STRATEGY_OPTIONS)}")
    return STRATEGY_OPTIONS[name]
