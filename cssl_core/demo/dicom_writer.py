"""Writing a HU volume as a genuine single-frame CT Image series.

Stored values are not HU: each cohort has its own rescale slope/intercept and pixel representation, as
scanners do, so the ingestion stage has to apply the rescale rather than get away with reading raw pixels.
The writer refuses values that do not fit the stored type instead of letting them wrap around silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from cssl_core.demo.identity import SeriesUids, SyntheticIdentity

HU_RANGE = (-1024, 3071)  # what a 12-bit CT scanner can represent; the phantom clips to it


@dataclass(frozen=True)
class StoredEncoding:
    """How HU map to stored pixel values for one cohort."""

    slope: float
    intercept: float
    dtype: np.dtype
    bits_stored: int

    @property
    def pixel_representation(self) -> int:
        return 1 if self.dtype.kind == "i" else 0

    @classmethod
    def for_rescale(cls, slope: float, intercept: float) -> StoredEncoding:
        """The smallest conventional encoding (12 or 16 bits, unsigned preferred) that holds HU_RANGE."""
        if not slope > 0:
            raise ValueError(f"rescale slope must be > 0, got {slope}")
        # Compute with the values a reader will parse from the header, not the unrounded floats.
        slope, intercept = float(_ds(slope)), float(_ds(intercept))
        lo, hi = (round((hu - intercept) / slope) for hu in HU_RANGE)
        for dtype in (np.dtype(np.uint16), np.dtype(np.int16)):
            for bits in (12, 16):
                low, high = (0, 2**bits - 1) if dtype.kind == "u" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
                if low <= lo and hi <= high:
                    return cls(slope, intercept, dtype, bits)
        raise ValueError(
            f"rescale slope {slope} / intercept {intercept} map HU {HU_RANGE} to stored values {lo}..{hi}, which fit "
            "neither uint16 nor int16; use a larger slope or an intercept near -1024"
        )

    def to_stored(self, hu: np.ndarray) -> np.ndarray:
        stored = np.rint((np.asarray(hu, dtype=np.float64) - self.intercept) / self.slope)
        if self.dtype.kind == "u":
            low, high = 0, 2**self.bits_stored - 1
        else:
            low, high = -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        if stored.min() < low or stored.max() > high:
            raise ValueError(f"stored values {stored.min():.0f}..{stored.max():.0f} do not fit {self.bits_stored} bits")
        return stored.astype(self.dtype)


@dataclass(frozen=True)
class Scanner:
    manufacturer: str
    model_name: str
    kvp: float


@dataclass(frozen=True)
class SeriesGeometry:
    """Patient-space (LPS) position of the first slice's first pixel; slices run toward -z (feet)."""

    origin_x: float
    origin_y: float
    top_z: float
    pixel_spacing_mm: float
    slice_thickness_mm: float

    def z(self, k: int) -> float:
        return self.top_z - k * self.slice_thickness_mm


def write_ct_series(
    series_dir: Path,
    hu: np.ndarray,
    *,
    encoding: StoredEncoding,
    geometry: SeriesGeometry,
    scanner: Scanner,
    identity: SyntheticIdentity,
    uids: SeriesUids,
    series_number: int = 1,
) -> list[Path]:
    """One file per slice, `<k:04d>.dcm`; names carry no header value."""
    series_dir.mkdir(parents=True, exist_ok=True)
    stored = encoding.to_stored(hu)
    paths = []
    for k in range(hu.shape[0]):
        ds = _slice_dataset(k, stored[k], encoding, geometry, scanner, identity, uids, series_number)
        path = series_dir / f"{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _ds(value: float) -> str:
    """The most precise DS string (16 chars at most) for a value; -0 is written as 0."""
    return format_number_as_ds(float(value) + 0.0)


def _slice_dataset(
    k: int,
    pixels: np.ndarray,
    encoding: StoredEncoding,
    geometry: SeriesGeometry,
    scanner: Scanner,
    identity: SyntheticIdentity,
    uids: SeriesUids,
    series_number: int,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = uids.instances[k]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uids.instances[k]
    ds.StudyInstanceUID = uids.study
    ds.SeriesInstanceUID = uids.series
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.Modality = "CT"

    # Synthetic PHI (see identity.py): every free-text value carries the marker.
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = identity.study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = identity.study_time
    ds.AccessionNumber = identity.accession_number
    ds.InstitutionName = identity.institution_name
    ds.InstitutionAddress = identity.institution_address
    ds.ReferringPhysicianName = identity.referring_physician
    ds.PerformingPhysicianName = identity.performing_physician
    ds.OperatorsName = identity.operator
    ds.StationName = identity.station_name
    ds.StudyID = identity.study_id
    ds.StudyDescription = identity.study_description
    ds.SeriesDescription = identity.series_description

    ds.Manufacturer = scanner.manufacturer
    ds.ManufacturerModelName = scanner.model_name
    ds.KVP = _ds(scanner.kvp)
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1

    z = geometry.z(k)
    ds.ImagePositionPatient = [_ds(geometry.origin_x), _ds(geometry.origin_y), _ds(z)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = _ds(z)
    ds.PixelSpacing = [_ds(geometry.pixel_spacing_mm), _ds(geometry.pixel_spacing_mm)]
    ds.SliceThickness = _ds(geometry.slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds(geometry.slice_thickness_mm)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = encoding.bits_stored
    ds.HighBit = encoding.bits_stored - 1
    ds.PixelRepresentation = encoding.pixel_representation
    ds.RescaleIntercept = _ds(encoding.intercept)
    ds.RescaleSlope = _ds(encoding.slope)
    ds.RescaleType = "HU"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["350", "1500"]
    ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    return ds
