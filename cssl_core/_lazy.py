"""Packages whose public names are imported on first use (PEP 562), not when the package is imported.

Why: importing any submodule runs its package's __init__, and an __init__ that re-exports everything eagerly
makes a light submodule cost what the heaviest one costs. `cssl_core.models.config`, `cssl_core.train.config`,
`cssl_core.strategies.options`, `cssl_core.replay.release`, `cssl_core.privacy.settings` need no torch, and
params.yaml is validated with them before every stage command (cssl_core.config); an eager __init__ made each
of those commands, torch-free stages included, pay ~5 s of torch and MONAI imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__, __getattr__, __dir__` for `package`, whose names (values) live in the submodules (keys).

    A name is imported from its submodule on first access (attribute, `from package import name`, `*`), then
    cached in the package namespace, so later lookups are ordinary attribute lookups.
    """
    where = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return sorted(where), __getattr__, __dir__
