"""The one error a bad params.yaml raises, and the translation of the reused validators' errors into it.

Why one type with one line: an operator fixes params.yaml from the message alone, so every refusal reads the
same way, `params.yaml <key.path>: <bad value> is not allowed: <what is allowed / what to do>`, whatever
validator found it. The validators this package reuses (TrainConfig, MAEConfig, ReleaseConfig, AuditConfig,
the strategies, cssl_core/config/quality.py, ...) raise ValueError, KeyError or TypeError in their own words and
often without the key path; `reused` turns those into a ConfigError that names the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

SOURCE = "params.yaml"
MAX_SHOWN = 100  # characters of a bad value quoted in a message


class _Missing:
    """Stands for a key that is absent (None is a value YAML can hold)."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING: Any = _Missing()


class Shown:
    """A value quoted verbatim in a message (e.g. `key 'trian'` for an unknown key)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class ConfigError(ValueError):
    """A params.yaml value the pipeline refuses; `str()` is one line naming the key path, the value and the fix.

    A ValueError, the project's convention for bad params, so callers that catch ValueError keep working.
    `source` is the file named at the start of the line (the CLI sets the --params path).
    """

    def __init__(self, path: str, value: Any, allowed: str, source: str = SOURCE) -> None:
        super().__init__(path, value, allowed)
        self.path, self.value, self.allowed, self.source = path, value, one_line(allowed), source

    def __str__(self) -> str:
        return f"{self.source} {self.bare()}"

    def bare(self) -> str:
        """The line without the file name, for quoting inside another message."""
        return f"{self.path}: {show(self.value)} is not allowed: {self.allowed}"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def show(value: Any) -> str:
    """A value as the message quotes it: repr (strings quoted, so 'fast' differs from fast), one line, bounded."""
    text = one_line(repr(value))
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _error_text(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:  # str(KeyError) is the repr of its message
        return one_line(str(error.args[0]))
    return one_line(str(error))


_NAMED_PATH = re.compile(r"params\.yaml\s+(?:has no\s+)?([A-Za-z_][\w@-]*(?:\.[\w@-]+)*)")
_VERB = re.compile(r"\s(?:must|should|cannot|needs?)\b")
_TRAILING_GOT = re.compile(r"(?:[,;:]\s*|\s+)\(?got\s+[^;]*$")  # ", got 'x'": the line shows the value already


def _mentioned(scope: str, keys: list[str]) -> list[str]:
    found = []
    for key in keys:
        match = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", scope)
        if match:
            found.append((match.start(), key))
    return [key for _, key in sorted(found)]


def _subjects(text: str, keys: list[str]) -> list[str]:
    """The keys a validator's message is about: those named before its verb ("lr must be > 0"; several in
    "a, b and c must be >= 0"), else the first one named at all; [] when it names none."""
    head = _VERB.split(text, maxsplit=1)[0]
    return _mentioned(head, keys) or _mentioned(text, keys)[:1]


def _lookup(values: Mapping[str, Any], keys: list[str]) -> Any:
    node: Any = values
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return MISSING
        node = node[key]
    return node


def translate(
    error: BaseException, path: str, values: Mapping[str, Any], key_paths: Mapping[str, str] | None = None
) -> ConfigError:
    """A reused validator's error about the block `values` (at `path`) as a ConfigError naming the key.

    The key comes from the message: a `params.yaml <path>` it already names (tasks/ validators), else the block's
    key it is about (cssl_core validators say "lr must be > 0"). `key_paths` maps keys that came from elsewhere
    (a stage's train override, privacy.seed passed into AuditConfig) to their own path.
    """
    text = _error_text(error)
    key_paths = dict(key_paths or {})
    named = _NAMED_PATH.match(text)
    if named:
        where = named.group(1)
        if where == path or where.startswith(path + "."):
            rest = where[len(path) + 1 :].split(".") if where != path else []
            value = _lookup(values, rest) if rest else dict(values)
        else:  # a key outside the block handed in: its value is not at hand
            value = Shown("its value")
        allowed = text[named.start(1) :]
    else:
        subjects = _subjects(text, [k for k in values if isinstance(k, str)])
        if len(subjects) == 1:
            where, value = key_paths.get(subjects[0], f"{path}.{subjects[0]}"), values[subjects[0]]
        else:  # several keys (or none) named: the block, showing the named keys' values
            where, value = path, {k: values[k] for k in subjects} or dict(values)
        allowed = text
    stripped = _TRAILING_GOT.sub("", allowed).strip()
    return ConfigError(where, value, stripped or allowed)


@contextmanager
def reused(
    path: str, values: Mapping[str, Any] | None = None, key_paths: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Run a reused validator on the block at `path`; its ValueError/KeyError/TypeError becomes a ConfigError.

    Other exception types pass through: they are bugs, not bad params, and keep their traceback.
    """
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise translate(error, path, values or {}, key_paths) from error
