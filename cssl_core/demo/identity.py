"""Synthetic patient identity and UIDs for the phantom's DICOM headers.

The headers carry fake PHI on purpose: de-identification can only be tested on data that has something
to remove. Every free-text value contains PHI_MARKER, so a test can grep any pipeline output for it;
dates and times cannot hold letters (DA/TM), so they are random but plausible. UIDs are derived from the
cohort's configuration, never from the clock, so that regenerating a cohort gives byte-identical files
(and DVC sees no change), while two differently configured cohorts never share a UID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from pydicom.uid import UID, generate_uid

PHI_MARKER = "PHIMARK"

_FIRST = ("Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena")
_STREETS = ("Elm Street", "Harbour Road", "Mill Lane", "Station Avenue", "Kingsway", "Orchard Close")


@dataclass(frozen=True)
class SyntheticIdentity:
    """Header values that identify a patient, a visit and a place (all fake)."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession_number: str
    institution_name: str
    institution_address: str
    referring_physician: str
    performing_physician: str
    operator: str
    station_name: str
    study_id: str
    study_description: str
    series_description: str


def cohort_tag(seed: int) -> str:
    """Eight hex digits that differ between seeds, so patient IDs of two cohorts do not collide."""
    return hashlib.sha256(f"cssl-phantom-patient:{seed}".encode()).hexdigest()[:8]


def synthetic_identity(rng: np.random.Generator, seed: int, index: int, slice_thickness_mm: float) -> SyntheticIdentity:
    first = _FIRST[int(rng.integers(len(_FIRST)))]
    number = int(rng.integers(1, 100))
    birth = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 65)))
    study = date(2014, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 10)))
    seconds = int(rng.integers(7 * 3600, 19 * 3600))
    tag = cohort_tag(seed)
    return SyntheticIdentity(
        patient_name=f"{PHI_MARKER}^{first}{number}",
        patient_id=f"{PHI_MARKER}-{tag}-{index:03d}",
        birth_date=birth.strftime("%Y%m%d"),
        sex="F" if rng.random() < 0.5 else "M",
        study_date=study.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        accession_number=f"{PHI_MARKER}{int(rng.integers(0, 10**8)):08d}"[:16],
        institution_name=f"{PHI_MARKER} General Hospital",
        institution_address=f"{PHI_MARKER} {int(rng.integers(1, 200))} {_STREETS[int(rng.integers(len(_STREETS)))]}",
        referring_physician=f"{PHI_MARKER}^Referrer{int(rng.integers(1, 50))}",
        performing_physician=f"{PHI_MARKER}^Radiologist{int(rng.integers(1, 50))}",
        operator=f"{PHI_MARKER}^Tech{int(rng.integers(1, 50))}",
        station_name=f"{PHI_MARKER}-CT{int(rng.integers(1, 10)):02d}",
        study_id=f"{PHI_MARKER}-{int(rng.integers(0, 10**6)):06d}"[:16],
        study_description=f"{PHI_MARKER} CT chest with contrast",
        series_description=f"{PHI_MARKER} axial {slice_thickness_mm:g} mm",
    )


@dataclass(frozen=True)
class SeriesUids:
    study: UID
    series: UID
    frame_of_reference: UID
    instances: tuple[UID, ...]


def series_uids(config_digest: str, patient: int, series: int, n_slices: int) -> SeriesUids:
    """Deterministic UIDs: the same configuration always yields the same UIDs, another never does."""

    def uid(*parts: object) -> UID:
        return generate_uid(entropy_srcs=["cssl-phantom", config_digest, *map(str, parts)])

    return SeriesUids(
        study=uid("study", patient),
        series=uid("series", patient, series),
        frame_of_reference=uid("frame", patient, series),
        instances=tuple(uid("instance", patient, series, k) for k in range(n_slices)),
    )
