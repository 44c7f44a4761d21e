"""The real chest CT cohort: four NSCLC CT series with GTV contours, shipped inside the pycerr package.

Why these: they are real patients' chest CTs, small enough to ship, installable offline with pip, and their
RTSTRUCT gross tumour volumes give a real slice-level task ("does this slice show tumour?") beside the
phantom's synthetic findings. Files are copied byte for byte, so ingestion meets them exactly as
delivered (Implicit VR, a vendor's own tags, an RTSTRUCT that is not an image). Licence: CC BY-NC 3.0,
cite Lambin et al.; the licence text travels with the copy, under annotations/ so ingestion ignores it.
Nothing returned here names a patient: only pat_<n> folder names and counts.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from cssl_core.demo.annotations import ANNOTATIONS_DIR, prepare_out_dir, write_mask, write_slice_table
from cssl_core.demo.rtstruct import SliceGeometry, rasterise, roi_contours

PIP_HINT = "pip install --no-deps pycerr==2.5.1"
PATIENTS = ("pat_1", "pat_2", "pat_3", "pat_4")
TUMOR_ROI = "GTV-1"
TUMOR_MASK_VALUE = 4
LABEL = "has_tumor"
LICENSE_FILE = f"{ANNOTATIONS_DIR}/LICENSE_NSCLC.txt"
_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def nsclc_source_dir() -> Path:
    """Folder holding pat_1..pat_4 inside the installed pycerr package.

    Located with find_spec rather than by importing `cerr`, so that a pycerr installed without its heavy
    dependencies (the recommended --no-deps) is still usable.
    """
    spec = importlib.util.find_spec("cerr")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "datasets" / "radiomics_phantom_dicom"
        if all((candidate / patient).is_dir() for patient in PATIENTS):
            return candidate
    where = (
        f" (found the package at {locations}, but not datasets/radiomics_phantom_dicom/pat_1..4)" if locations else ""
    )
    raise FileNotFoundError(f"the NSCLC demo cohort needs the pycerr package{where}; install it with: {PIP_HINT}")


def copy_nsclc_cohort(out_dir: Path) -> dict[str, Any]:
    """Copy every file of pat_1..4 to out_dir/pat_<n>/ and write has_tumor labels and GTV masks."""
    source = nsclc_source_dir()
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, "cssl_core.demo.nsclc", {"source": "pycerr 2.5.1 datasets/radiomics_phantom_dicom"})
    shutil.copyfile(source / "README_LICENSE.txt", out_dir / LICENSE_FILE)
    rows: list[dict[str, Any]] = []
    per_patient: dict[str, int] = {}
    copied = 0
    for patient in PATIENTS:
        files = sorted(p for p in (source / patient).iterdir() if p.is_file())
        (out_dir / patient).mkdir()
        for path in files:
            shutil.copyfile(path, out_dir / patient / path.name)
        copied += len(files)
        ct_files, mask, labels = _annotate_patient(patient, files)
        mask_file = write_mask(out_dir, patient, mask)
        for index, path in enumerate(ct_files):
            rows.append(
                {
                    "file": f"{patient}/{path.name}",
                    LABEL: bool(labels[index]),
                    "mask_file": mask_file,
                    "mask_index": index,
                }
            )
        per_patient[patient] = int(labels.sum())
    write_slice_table(out_dir, rows, [LABEL])
    return {
        "source": "nsclc",
        "patients": len(PATIENTS),
        "series": len(PATIENTS),
        "slices": len(rows),
        "dicom_files": copied,
        "files": sum(1 for p in out_dir.rglob("*") if p.is_file()),
        f"slices_{LABEL}": int(sum(per_patient.values())),
        "tumor_slices_per_patient": per_patient,
    }


def _annotate_patient(patient: str, files: list[Path]) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """CT files (in file-name order, which is the mask order), their GTV mask and has_tumor labels."""
    ct_files, geometries, contours = [], [], []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class == _CT_STORAGE:
            ct_files.append(path)
            geometries.append(SliceGeometry.from_dataset(ds))
        elif sop_class == _RTSTRUCT_STORAGE:
            contours += roi_contours(ds, TUMOR_ROI)
    if not ct_files or not contours:
        raise RuntimeError(
            f"{patient}: expected CT slices and {TUMOR_ROI} contours, found {len(ct_files)} CT files "
            f"and {len(contours)} contours"
        )
    mask, contoured = rasterise(contours, geometries, TUMOR_MASK_VALUE)
    labels = mask.any(axis=(1, 2))
    if not np.array_equal(labels, contoured) or not labels.any():
        # A contour that fills nothing (or an even-odd pair that cancels) is a data problem to look at,
        # not something to paper over.
        raise RuntimeError(f"{patient}: {int(contoured.sum())} contoured slices but {int(labels.sum())} masked slices")
    return ct_files, mask, labels
