"""Stage `demo-data@<cohort>`: write one built-in demo cohort as DICOM under data/raw/<cohort>.

`source: phantom` cohorts are synthetic chest CT generated from their params block; `source: nsclc` is
the four real NSCLC chest CT series shipped in the pycerr package (CC BY-NC 3.0, Lambin et al.).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cssl_core.config import ProjectConfig
from cssl_core.config.data import DemoCohort
from cssl_core.demo import SOURCES
from tasks import tracking


def write_demo_cohort(out_dir: Path, cohort: DemoCohort) -> dict[str, Any]:
    """Write the cohort its checked params block describes; returns the generator's summary.

    The block was validated with the whole params.yaml (cssl_core.config.data.parse_data), so only the
    generator is chosen here; a source without a branch below is a bug (SOURCES grew), not a bad params.yaml.
    """
    if cohort.source == "phantom":
        from cssl_core.demo.phantom import write_phantom_cohort

        return write_phantom_cohort(out_dir, cohort.phantom)
    if cohort.source == "nsclc":
        from cssl_core.demo.nsclc import copy_nsclc_cohort

        return copy_nsclc_cohort(out_dir)
    raise ValueError(f"data.demo.{cohort.name}.source {cohort.source!r} has no writer here (sources: {SOURCES})")


def run_demo_data(out_dir: Path, cohort: str, config: ProjectConfig) -> dict[str, Any]:
    """Stage entry point: write demo cohort `cohort` of data.demo, logging its block and the summary's figures."""
    demo = config.data.demo
    if cohort not in demo:
        raise KeyError(f"no demo cohort {cohort!r} in params.yaml data.demo (known: {', '.join(sorted(demo))})")
    with tracking.stage_run(f"demo-data@{cohort}", demo[cohort].as_params(), tags={"cssl.cohort": cohort}):
        summary = write_demo_cohort(out_dir, demo[cohort])
        tracking.log_metrics(
            {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
    return summary
