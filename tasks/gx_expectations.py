"""The Great Expectations adapter: the quality gates' GX suites, their validation and GX's HTML pages.

This is the one module that imports great_expectations (tests/test_layers.py), as tasks/tracking.py is the one
that imports MLflow: cssl_core stays free of orchestration, tracking and reporting frameworks, and the two gates
(tasks/screen.py, tasks/quality.py) reach GX only through here. What GX hands back is reduced at once to plain
`Outcome`s (cssl_core/quality/report.py), so nothing past this module reads a GX object.

Why GX rather than a page of asserts: each rule is a declarative, named expectation whose result says
how many rows broke it and which ones (by `series_key`), and GX renders the same results as HTML.

Every expectation carries a severity in `meta["severity"]`: `hard` ones exclude a series (or stop the
cohort), `soft` ones only warn. GX's own `severity` field is set to match (critical / warning) so GX
renderers show the same thing. `meta["rule"]` is the one-line, human reading of the rule that the report
and the error message print, and `meta["param"]` the `quality` key whose value the rule applies (absent
when no setting can loosen it), so a report can say which line of params.yaml to edit.

The manifest suite is evaluated per series (tasks/screen.py): with `row_column` set, `validate` asks GX
for the COMPLETE list of offending rows, and each Outcome carries their row numbers.

great_expectations takes seconds to import, so it is imported inside the functions: the `cssl` CLI
must answer `--help` at once and the other stages must not pay for it.

Validation runs in an ephemeral context (nothing is written to a `gx/` project folder) with a pandas
data source, a dataframe asset and a whole-dataframe batch definition: the gate's inputs are already
DVC-versioned files, so a persistent GX store would only be a second, unversioned copy of the config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cssl_core.quality.report import HARD, MAX_SERIES, SOFT, Outcome

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.expectations import Expectation

KEY_COLUMN = "series_key"
ROW_COLUMN = "_row"  # row number added to a frame so every offending row can be traced back
MANIFEST_SUITE = "manifest"
SLICES_SUITE = "slices"
DEFAULT_MODALITIES = ("CT",)


def _range(params: Mapping[str, Any], key: str) -> tuple[float, float]:
    value = params.get(key)
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"params.yaml quality.{key} must be [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValueError(f"params.yaml quality.{key} must be [low, high] with low <= high, got {value!r}")
    return low, high


def _number(params: Mapping[str, Any], key: str) -> float:
    if key not in params:
        raise KeyError(f"params.yaml has no 'quality.{key}'; see the shipped params.yaml for the expected layout")
    return float(params[key])


def _tag(severity: str, rule: str, param: str | None = None) -> dict[str, Any]:
    """Keyword arguments giving an expectation our severity (meta) and GX's matching one."""
    meta = {"severity": severity, "rule": rule, **({"param": param} if param else {})}
    return {"meta": meta, "severity": "critical" if severity == HARD else "warning"}


def _between(column: str, bounds: tuple[float, float], severity: str, why: str, param: str) -> Expectation:
    import great_expectations.expectations as gxe

    low, high = bounds
    rule = f"{column} between {low:g} and {high:g}{why}"
    return gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high, **_tag(severity, rule, param)
    )


def _not_null(column: str) -> Expectation:
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnValuesToNotBeNull(column=column, **_tag(HARD, f"{column} is present"))


# Range checks ignore nulls, so every column a rule reads must also be present.
_GATED_COLUMNS = (
    "series_key",
    "patient_key",
    "modality",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "n_slices",
    "hu_min",
    "hu_max",
)


def manifest_expectations(params: Mapping[str, Any]) -> list[Expectation]:
    """Rules on the ingested cohort's manifest (one row per series)."""
    import great_expectations.expectations as gxe

    modalities = [str(m) for m in params.get("modalities", DEFAULT_MODALITIES)]
    spacing_xy, spacing_z = _range(params, "spacing_xy_mm"), _range(params, "spacing_z_mm")
    min_soft = _number(params, "min_slices_soft")
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, **_tag(HARD, "at least one series ingested")),
        *(_not_null(column) for column in _GATED_COLUMNS),
        gxe.ExpectColumnValuesToBeUnique(column="series_key", **_tag(HARD, "series_key is unique")),
        gxe.ExpectColumnValuesToBeInSet(
            column="modality",
            value_set=modalities,
            **_tag(HARD, f"modality in {{{', '.join(modalities)}}}", "modalities"),
        ),
        _between("spacing_x", spacing_xy, HARD, " mm", "spacing_xy_mm"),
        _between("spacing_y", spacing_xy, HARD, " mm", "spacing_xy_mm"),
        _between("spacing_z", spacing_z, HARD, " mm", "spacing_z_mm"),
        _between("n_slices", _range(params, "n_slices"), HARD, "", "n_slices"),
        gxe.ExpectColumnValuesToBeBetween(
            column="n_slices",
            min_value=min_soft,
            **_tag(SOFT, f"n_slices >= {min_soft:g} (shorter series are suspicious)", "min_slices_soft"),
        ),
        _between("hu_min", _range(params, "air_hu_min"), HARD, " HU (air must be in the volume)", "air_hu_min"),
        _between("hu_max", _range(params, "plausible_hu_max"), SOFT, " HU (plausible maximum)", "plausible_hu_max"),
        # a missing slice (a gap in the slice positions) or uneven spacing: resampling interpolates across it, so
        # the series is kept, but a user should hear of it (it passed without a word before)
        gxe.ExpectColumnValuesToBeInSet(
            column="has_gaps", value_set=[False], **_tag(SOFT, "no missing slice (slice positions without a gap)")
        ),
        gxe.ExpectColumnValuesToBeInSet(column="spacing_uneven", value_set=[False], **_tag(SOFT, "even slice spacing")),
        # a volume of one value (all air, all zero) windows to blank slices in every window
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="hu_max",
            column_B="hu_min",
            or_equal=False,
            ignore_row_if="either_value_is_missing",
            **_tag(HARD, "hu_max > hu_min (the volume is not one constant value)"),
        ),
    ]


def slice_expectations(params: Mapping[str, Any], value_range: tuple[float, float], n_slices: int) -> list[Expectation]:
    """Rules on the per-slice statistics of a windowed cohort (cssl_core.quality_stats).

    "Not constant" is hard with `mostly` (a few blank slices at the ends of a scan are normal, a cohort
    of them is a broken window) and soft without it, so every constant slice is still listed. With
    `not_constant_mostly: 1` the two would be the same rule, and only the hard one is kept.
    """
    import great_expectations.expectations as gxe

    low, high = value_range
    mostly = _number(params, "not_constant_mostly")
    if not 0.0 <= mostly <= 1.0:
        raise ValueError(f"params.yaml quality.not_constant_mostly must be in [0, 1], got {mostly}")
    rules = [
        gxe.ExpectTableRowCountToEqual(value=int(n_slices), **_tag(HARD, f"{n_slices} slices, as meta.json says")),
        gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True], **_tag(HARD, "no NaN or inf in a slice")),
        gxe.ExpectColumnValuesToBeBetween(column="min", min_value=low, **_tag(HARD, f"slice min >= {low:g}")),
        gxe.ExpectColumnValuesToBeBetween(column="max", max_value=high, **_tag(HARD, f"slice max <= {high:g}")),
        gxe.ExpectColumnValuesToBeBetween(
            column="std",
            min_value=0.0,
            strict_min=True,
            mostly=mostly,
            **_tag(HARD, f"at least {mostly:.0%} of slices are not constant (std > 0)"),
        ),
    ]
    if mostly < 1.0:
        rules.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="std", min_value=0.0, strict_min=True, **_tag(SOFT, "no slice is constant (std > 0)")
            )
        )
    return rules


def _result_format(frame: pd.DataFrame, key_column: str) -> dict[str, Any]:
    """SUMMARY, with enough offending rows to reach MAX_SERIES distinct keys.

    COMPLETE would list every offending row (seconds and hundreds of MB for a cohort of constant slices);
    MAX_SERIES times the largest number of rows one key has is the fewest rows that still guarantees
    MAX_SERIES distinct keys when there are that many.
    """
    if key_column not in frame.columns:
        return {"result_format": "SUMMARY"}
    per_key = frame[key_column].value_counts(dropna=False)
    rows = MAX_SERIES * int(per_key.max()) if len(per_key) else MAX_SERIES
    return {
        "result_format": "SUMMARY",
        "partial_unexpected_count": max(MAX_SERIES, min(rows, len(frame))),
        "unexpected_index_column_names": [key_column],
    }


def _complete_format(frame: pd.DataFrame, key_column: str, row_column: str) -> dict[str, Any]:
    """Every offending row (a manifest has one row per series: small), by row number and key."""
    columns = [c for c in (row_column, key_column) if c in frame.columns]
    return {"result_format": "COMPLETE", "unexpected_index_column_names": columns}


def validate(
    suite_name: str,
    frame: pd.DataFrame,
    expectations: Sequence[Expectation],
    key_column: str = KEY_COLUMN,
    row_column: str | None = None,
) -> ExpectationSuiteValidationResult:
    """Run one suite on a DataFrame in a fresh ephemeral context (cheap: a few ms, nothing on disk).

    With `row_column` (a column of row numbers in `frame`) every offending row is reported, not a sample.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm noise in DVC logs
    asset = context.data_sources.add_pandas(f"{suite_name}_source").add_dataframe_asset(suite_name)
    batch = asset.add_batch_definition_whole_dataframe(f"{suite_name}_whole")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=list(expectations)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch, suite=suite)
    )
    result_format = _complete_format(frame, key_column, row_column) if row_column else _result_format(frame, key_column)
    return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def _exception_message(info: Mapping[str, Any] | None) -> str | None:
    """GX gives either one {raised_exception, exception_message} or a mapping of them per metric."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, Mapping) and (message := _exception_message(value)):
            return message
    return None


def _series_keys(result: Mapping[str, Any], key_column: str) -> list[str | None]:
    keys: list[str | None] = []
    for row in result.get("partial_unexpected_index_list") or []:
        key = row.get(key_column) if isinstance(row, Mapping) else None
        key = None if key is None or (isinstance(key, float) and math.isnan(key)) else str(key)
        if key not in keys:
            keys.append(key)
        if len(keys) == MAX_SERIES:
            break
    return keys


def _rows(result: Mapping[str, Any], row_column: str) -> list[int]:
    rows = result.get("unexpected_index_list") or []
    return sorted({int(row[row_column]) for row in rows if isinstance(row, Mapping) and row_column in row})


def _distinct(values: Sequence[Any], limit: int = MAX_SERIES) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
        if len(out) == limit:
            break
    return out


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def _observed(result: Mapping[str, Any], error: str | None) -> Any:
    """What GX saw: the aggregate for table-level rules, counts and a few offending values for row rules."""
    if error:
        return {"error": error}
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        return {
            "unexpected_count": result.get("unexpected_count"),
            "unexpected_percent": _rounded(result.get("unexpected_percent")),
            "values": _distinct(result.get("partial_unexpected_list") or []),
        }
    return None


def _columns(kwargs: Mapping[str, Any]) -> str | None:
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_A") and kwargs.get("column_B"):
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    return None


def outcomes(
    suite_name: str,
    validation: ExpectationSuiteValidationResult,
    key_column: str = KEY_COLUMN,
    row_column: str = ROW_COLUMN,
) -> list[Outcome]:
    """Plain-value summary of every expectation of one validation run (in the order GX reports them)."""
    out = []
    for item in validation.results:
        config = item.expectation_config
        column = _columns(config.kwargs)
        result = dict(item.result or {})
        error = _exception_message(item.exception_info)
        meta = config.meta or {}
        out.append(
            Outcome(
                suite=suite_name,
                expectation=f"{config.type}({column})" if column else config.type,
                column=column,
                rule=str(meta.get("rule", config.type)),
                severity=str(meta.get("severity", HARD)),
                success=bool(item.success),
                unexpected_series=[] if item.success else _series_keys(result, key_column),
                observed=_observed(result, error),
                param=meta.get("param"),
                unexpected_rows=[] if item.success else _rows(result, row_column),
            )
        )
    return out


def render_html(validation: ExpectationSuiteValidationResult) -> str:
    """GX's own validation page for one suite, rendered without a data-docs site (tens of ms)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(validation))


def write_html(validations: Mapping[str, ExpectationSuiteValidationResult], output_path: Path) -> None:
    """GX's page per suite next to the JSON report: `<report stem>.<suite>.html`."""
    for name, validation in validations.items():
        html_path = output_path.with_name(f"{output_path.stem}.{name}.html")
        html_path.write_text(render_html(validation), encoding="utf-8")
