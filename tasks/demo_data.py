"""Stage `demo-data@<cohort>`: write one built-in demo cohort as DICOM under data/raw/<cohort>.

`source: phantom` cohorts are synthetic chest CT generated from their params block; `source: nsclc` is
the four real NSCLC chest CT series shipped in the pycerr package (CC BY-NC 3.0, Lambin et al.).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cssl_core.demo import SOURCES
from tasks import tracking


def write_demo_cohort(out_dir: Path, cohort: str, block: dict[str, Any]) -> dict[str, Any]:
    """Write the cohort described by its params block; returns the generator's summary."""
    settings = dict(block)
    source = settings.pop("source", None)
    if source == "phantom":
        from cssl_core.demo.phantom import PhantomConfig, write_phantom_cohort

        return write_phantom_cohort(out_dir, PhantomConfig.from_mapping(settings))
    if source == "nsclc":
        from cssl_core.demo.nsclc import copy_nsclc_cohort

        if settings:
            raise ValueError(f"data.demo.{cohort}: the nsclc source takes no settings, got {sorted(settings)}")
        return copy_nsclc_cohort(out_dir)
    raise ValueError(f"data.demo.{cohort}.source must be one of {SOURCES}, got {source!r}")


def run_demo_data(out_dir: Path, cohort: str, params: dict[str, Any]) -> dict[str, Any]:
    demo = params.get("data", {}).get("demo", {})
    if cohort not in demo:
        raise KeyError(f"no demo cohort {cohort!r} in params.yaml data.demo (known: {', '.join(sorted(demo))})")
    block = demo[cohort]
    with tracking.stage_run(f"demo-data@{cohort}", block, tags={"cssl.cohort": cohort}):
        summary = write_demo_cohort(out_dir, cohort, block)
        tracking.log_metrics(
            {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
    return summary
