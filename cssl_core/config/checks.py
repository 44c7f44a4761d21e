"""Typed readers for params.yaml blocks: known keys, the right type, a range, a choice.

Why here and generic: the "known keys, right types" layer is the same for every section, and the reused
validators (dataclasses such as TrainConfig) either do not check types at all (`"fast" <= 0` is a TypeError
deep inside) or check them without the key path. `check_fields` reads the types from the reused class's own
annotations, so there is no second list of field types to keep in step with it.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cssl_core.config.errors import MISSING, ConfigError, Shown

NAME = re.compile(r"^[A-Za-z0-9_][\w.-]*$")  # cohort, window and stage names: they end up in paths and stage names


def join(path: str, key: Any) -> str:
    """`path.key`, or `key` at the top level (path "")."""
    return f"{path}.{key}" if path else str(key)


def _hint(wrong: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(wrong, [str(k) for k in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def choice(path: str, value: Any, choices: Iterable[str], what: str = "choose one of") -> str:
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        hint = _hint(value, options) if isinstance(value, str) else ""
        raise ConfigError(path, value, f"{what} {', '.join(options)}{hint}")
    return value


def mapping(path: str, value: Any, *, optional: bool = False) -> Mapping[str, Any]:
    """A block; a missing or empty (`key:`) optional block is {} (the tasks read it with `.get(...) or {}`)."""
    if optional and (value is MISSING or value is None):
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path or "(top level)", value, "a mapping of settings is needed (see the shipped params.yaml)")
    for key in value:
        if not isinstance(key, str):
            where = path or "params.yaml"
            raise ConfigError(join(path, key), Shown(f"key {key!r}"), f"keys under {where} must be text")
    return value


def keys(path: str, block: Mapping[str, Any], known: Iterable[str], required: Iterable[str] = ()) -> None:
    """Unknown keys are errors (a typo must not silently fall back to a default); required ones must be there."""
    allowed, label = list(known), path or "params.yaml"
    for key in block:
        if key not in allowed:
            raise ConfigError(
                join(path, key), Shown(f"key {key!r}"), f"{label} takes {', '.join(allowed)}{_hint(key, allowed)}"
            )
    for key in required:
        if key not in block:
            raise ConfigError(join(path, key), MISSING, f"{label} needs {key} (see the shipped params.yaml)")


def get(block: Mapping[str, Any], key: str) -> Any:
    return block.get(key, MISSING)


def _yaml_number_hint(value: Any) -> str:
    """PyYAML reads 5e-4 (no dot) as a string; say so, since the value looks right to the reader."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value} as text: write it with a dot, e.g. 5.0e-4)"
    return ""


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def integer(path: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, value, f"{path} must be an integer{_yaml_number_hint(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(path, value, f"{path} must be an integer >= {minimum}")
    return value


def number(path: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    """A finite number in the interval; the message spells the interval as the reader would ([0, 1))."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if not is_number(value):
        raise ConfigError(path, value, f"{path} must be a number in {interval}{_yaml_number_hint(value)}")
    x = float(value)
    if x < low or x > high or (low_open and x == low) or (high_open and x == high):
        raise ConfigError(path, value, f"{path} must be a number in {interval}")
    return x


def boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, value, f"{path} must be true or false")
    return value


def name(path: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ConfigError(path, value, f"{path} must be a name of letters, digits, _ . - (it becomes a folder name)")
    return value


def names(
    path: str, value: Any, choices: Iterable[str] | None = None, *, nonempty: bool = True, what: str = "choose one of"
) -> tuple[str, ...]:
    """A list of distinct names, each one of `choices` when given."""
    if not isinstance(value, list | tuple) or (nonempty and not value):
        raise ConfigError(path, value, f"{path} must be a{' non-empty' if nonempty else ''} list of names")
    options = list(choices) if choices is not None else None
    for position, item in enumerate(value):
        if options is not None:
            choice(f"{path}[{position}]", item, options, what=what)
        else:
            name(f"{path}[{position}]", item)
        if item in value[:position]:
            raise ConfigError(f"{path}[{position}]", item, f"{path} lists {item!r} twice; list each once")
    return tuple(value)


# ---- types read from a reused class's annotations -------------------------------------------------------------


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        if args:
            return f"a list of {len(args)} {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}.get(
        hint, "a mapping" if origin in (dict, Mapping) or hint is dict else str(hint)
    )


def matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a type annotation; an annotation it cannot read accepts anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True)))
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, Mapping)
    return True


def annotations(owner: type | Callable[..., Any]) -> dict[str, Any]:
    """The resolved field types of a dataclass (or a function's parameters)."""
    return typing.get_type_hints(owner)


def check_fields(
    path: str,
    values: Mapping[str, Any],
    hints: Mapping[str, Any],
    key_paths: Mapping[str, str] | None = None,
    what: str | None = None,
) -> None:
    """Known keys and the right types against `hints` (from `annotations(cls)`), before the class itself runs.

    `key_paths` names keys that came from another block (e.g. a stage's train override).
    """
    key_paths = key_paths or {}
    for key, value in values.items():
        where = key_paths.get(key, f"{path}.{key}")
        if key not in hints:
            raise ConfigError(
                where, Shown(f"key {key!r}"), f"{what or path} takes {', '.join(hints)}{_hint(key, hints)}"
            )
        if not matches(value, hints[key]):
            raise ConfigError(where, value, f"{where} must be {_describe(hints[key])}{_yaml_number_hint(value)}")
