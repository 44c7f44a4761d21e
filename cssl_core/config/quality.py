"""The quality gate's settings for one cohort: params.yaml's `quality` defaults with `quality.cohorts.<name>` on top.

Why per cohort: a site that scans limbs, or crops its reconstructions, needs a looser air check than a
chest cohort, and loosening it globally would let bad chest scans through. Each cohort's stages list only
their own `quality.cohorts.<name>` key in dvc.yaml, so editing one cohort's entry re-runs only that
cohort's quality stages.

DVC refuses to run a stage whose listed params key is missing from params.yaml (measured with DVC 3.67:
"Parameters 'quality.cohorts.b' are missing"), while an empty (`{}`) or null entry is accepted. So every
cohort of `ingest.cohorts` needs an entry; an empty one means "the defaults".

Every value is checked here, where the key that set it is known, so an error names exactly the line of
params.yaml to fix (`quality.air_hu_min` or `quality.cohorts.<name>.air_hu_min`).

Here, in cssl_core, because the whole-params check that runs before every stage (cssl_core.config.data.parse_quality)
resolves each cohort's settings with these rules, and the screen and quality stages (tasks/screen.py,
tasks/quality.py) read exactly those (ProjectConfig.quality.settings); cssl_core imports nothing from tasks/.
`required_series` is the screen stage's reading of `min_series`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

ON_FAIL = ("stop", "exclude")
DEFAULT_ON_FAIL = "exclude"
DEFAULT_MIN_SERIES: int | float = 0.5
RANGE_KEYS = ("spacing_xy_mm", "spacing_z_mm", "n_slices", "air_hu_min", "plausible_hu_max")


def _check_range(label: str, value: Any) -> None:
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(_is_number(v) for v in value):
        raise ValueError(f"params.yaml {label} must be [low, high], got {value!r}")
    if float(value[0]) > float(value[1]):
        raise ValueError(f"params.yaml {label} must be [low, high] with low <= high, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_number(label: str, value: Any) -> None:
    if not _is_number(value):
        raise ValueError(f"params.yaml {label} must be a number, got {value!r}")


def _check_fraction(label: str, value: Any) -> None:
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"params.yaml {label} must be in [0, 1], got {value!r}")


def _check_modalities(label: str, value: Any) -> None:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"params.yaml {label} must be a list of modality codes such as [CT], got {value!r}")


def _check_bool(label: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"params.yaml {label} must be true or false, got {value!r}")


def _check_on_fail(label: str, value: Any) -> None:
    if value not in ON_FAIL:
        raise ValueError(f"params.yaml {label} must be one of {', '.join(ON_FAIL)}, got {value!r}")


def _check_min_series(label: str, value: Any) -> None:
    """An int is a count of series (>= 1), a float a fraction of the cohort's series in (0, 1]."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return
    raise ValueError(
        f"params.yaml {label} must be a count of series (an integer >= 1) or a fraction in (0, 1] "
        f"(e.g. 0.5), got {value!r}"
    )


CHECKS: dict[str, Callable[[str, Any], None]] = {
    "modalities": _check_modalities,
    **dict.fromkeys(RANGE_KEYS, _check_range),
    "min_slices_soft": _check_number,
    "not_constant_mostly": _check_fraction,
    "html_report": _check_bool,
    "on_fail": _check_on_fail,
    "min_series": _check_min_series,
}
DEFAULTS: dict[str, Any] = {"on_fail": DEFAULT_ON_FAIL, "min_series": DEFAULT_MIN_SERIES, "html_report": True}


def quality_block(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the `quality` block (what the CLI passes) or the whole params.yaml."""
    block = params.get("quality", params)
    if not isinstance(block, Mapping):
        raise ValueError(f"params.yaml quality must be a mapping, got {type(block).__name__}")
    return block


def _checked(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    for key, value in values.items():
        if key not in CHECKS:
            known = ", ".join(sorted(CHECKS))
            raise ValueError(f"params.yaml {prefix}{key} is not a quality setting (known: {known})")
        CHECKS[key](f"{prefix}{key}", value)
    return dict(values)


def missing_entry(cohort: str) -> KeyError:
    """The error for a cohort without a `quality.cohorts` entry: here and in the typed config's lookup, one wording."""
    return KeyError(
        f"params.yaml has no quality.cohorts.{cohort}: add `{cohort}: {{}}` under quality.cohorts "
        "(an empty entry keeps the defaults; DVC needs one entry per cohort of ingest.cohorts)"
    )


def cohort_override(block: Mapping[str, Any], cohort: str) -> dict[str, Any]:
    """`quality.cohorts.<cohort>`, validated; missing means DVC could not have run the stage, so it is an error."""
    cohorts = block.get("cohorts")
    if cohorts is None or not isinstance(cohorts, Mapping) or cohort not in cohorts:
        raise missing_entry(cohort)
    entry = cohorts[cohort]
    if entry is None:
        return {}
    if not isinstance(entry, Mapping):
        raise ValueError(f"params.yaml quality.cohorts.{cohort} must be a mapping of settings (or {{}}), got {entry!r}")
    return _checked(entry, f"quality.cohorts.{cohort}.")


def effective_params(params: Mapping[str, Any], cohort: str) -> dict[str, Any]:
    """The settings the gate applies to `cohort`: defaults, then the block, then the cohort's own entry."""
    block = quality_block(params)
    shared = _checked({k: v for k, v in block.items() if k != "cohorts"}, "quality.")
    return {**DEFAULTS, **shared, **cohort_override(block, cohort)}


def required_series(min_series: int | float, n_series: int) -> int:
    """How many series must pass: the count itself, or the fraction of the cohort rounded up (at least 1)."""
    if isinstance(min_series, float):
        return max(1, math.ceil(min_series * n_series - 1e-9))
    return int(min_series)
