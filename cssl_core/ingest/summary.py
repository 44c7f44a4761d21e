"""Run summary: the counts a user (and MLflow) wants after an ingest, also written as summary.json."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cssl_core.ingest.reasons import FileStatus
from cssl_core.ingest.records import FileOutcome


@dataclass(slots=True)
class IngestSummary:
    """Counts only (never identifiers), so it can be logged, printed and tracked freely."""

    n_files: int = 0
    n_ingested: int = 0
    n_quarantined: int = 0
    n_ignored: int = 0
    n_series: int = 0
    n_slices: int = 0
    n_patients: int = 0
    n_masks: int = 0
    n_padded: int = 0  # series in which scanner padding was found (and written as air)
    by_status: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    by_padding: dict[str, int] = field(default_factory=dict)  # series per padding_source


def summarise(outcomes: Iterable[FileOutcome], manifest_rows: Sequence[Mapping[str, Any]]) -> IngestSummary:
    outcomes = list(outcomes)
    by_status = Counter(str(o.status) for o in outcomes)
    by_reason = Counter(str(o.reason) for o in outcomes)
    by_padding = Counter(str(r["padding_source"]) for r in manifest_rows)
    return IngestSummary(
        n_files=len(outcomes),
        n_ingested=by_status.get(FileStatus.INGESTED, 0),
        n_quarantined=by_status.get(FileStatus.QUARANTINED, 0),
        n_ignored=by_status.get(FileStatus.IGNORED, 0),
        n_series=len(manifest_rows),
        n_slices=sum(int(r["n_slices"]) for r in manifest_rows),
        n_patients=len({r["patient_key"] for r in manifest_rows}),
        n_masks=sum(1 for r in manifest_rows if r["mask_path"]),
        n_padded=sum(n for source, n in by_padding.items() if source != "none"),
        by_status=dict(sorted(by_status.items())),
        by_reason=dict(sorted(by_reason.items())),
        by_padding=dict(sorted(by_padding.items())),
    )
