"""The "unknown key" check of the config dataclasses built from a params block (TrainConfig, MAEConfig,
ReleaseConfig, AuditConfig, PhantomConfig): a typo must be an error, never a silent fall-back to the default.

Its own module, with no cssl_core import: the dataclasses it serves are imported by cssl_core/config while that
package initialises, so a helper inside cssl_core/config would import them back in a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def reject_unknown_keys(
    values: Mapping[str, Any],
    cls: type,
    what: str,
    *,
    error: type[Exception] = KeyError,
    field_order: bool = False,
    known_label: str = "known",
) -> None:
    """Raise `error("<what> [unknown keys]; <known_label>: [field names]")` when `values` holds a key that is no
    field of the dataclass `cls`. The unknown keys are sorted; the known ones too, unless `field_order` (as
    declared). Each caller keeps its own wording and error type, which its tests and users already know."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise error(f"{what} {unknown}; {known_label}: {known if field_order else sorted(known)}")
