"""Test corpora for ingestion, built from real DICOM shipped with pycerr, pydicom and pydicom-data.

Files are reached by exact name (pydicom's wildcard look-ups may try the network). Every derived file
gets fresh SOP/Series UIDs so that it forms its own series unless a test wants it in a shared one.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    generate_uid,
)

PYCERR_PATIENTS = ("pat_1", "pat_2", "pat_3", "pat_4")


def pycerr_root() -> Path:
    return Path(str(importlib.resources.files("cerr") / "datasets" / "radiomics_phantom_dicom"))


def pydicom_file(name: str) -> Path:
    return Path(get_testdata_file(name))


def pydicom_data_file(name: str) -> Path:
    import data_store

    return Path(os.path.dirname(data_store.__file__)) / "data" / name


def dicomdir_file(name: str) -> Path:
    return pydicom_file("CT_small.dcm").parent / "dicomdirtests" / name


def read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def renew(ds: Dataset, series_uid: str | None = None) -> Dataset:
    """Fresh SOP instance UID and (unless given) a fresh series UID."""
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(path, ds)
    return path


def ct_small_hu() -> np.ndarray:
    """Reference HU of CT_small.dcm: pydicom's stored values with its rescale (slope 1, intercept -1024)."""
    ds = read(pydicom_file("CT_small.dcm"))
    return (ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)


def padded_to_air(hu: np.ndarray, padding_hu: int) -> np.ndarray:
    """What ingestion writes for a volume whose padding is `padding_hu`: air (-1000 HU) in its place."""
    return np.where(hu == padding_hu, np.int16(-1000), hu).astype(np.int16)


def hu_of(path: Path) -> np.ndarray:
    """Direct pydicom computation for a single-frame file: slope * stored + intercept."""
    ds = read(path)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return np.rint(ds.pixel_array.astype(np.float64) * slope + intercept).astype(np.int16)


@dataclass
class EdgeCorpus:
    """An edge-case cohort folder plus what each file is expected to become."""

    root: Path
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (status, reason)
    reference_hu: dict[str, np.ndarray] = field(default_factory=dict)  # path -> expected (frames, r, c) HU
    lossy: set[str] = field(default_factory=set)

    def expect(self, rel: str, status: str, reason: str) -> None:
        self.expected[rel] = (status, reason)


def _copy(src: Path, root: Path, rel: str) -> Path:
    dst = root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _slice_series(root: Path, folder: str, n: int, step: float, *, names: list[str] | None = None) -> list[Path]:
    """n CT_small-derived slices of one new series at z = k * step, each with distinct pixel values."""
    base = read(pydicom_file("CT_small.dcm"))
    series_uid = generate_uid()
    x, y, z0 = (float(v) for v in base.ImagePositionPatient)
    paths = []
    for k in range(n):
        ds = renew(read(pydicom_file("CT_small.dcm")), series_uid)
        ds.ImagePositionPatient = [x, y, z0 + k * step]
        ds.InstanceNumber = k + 1
        ds.PixelData = (base.pixel_array + 10 * k).astype(np.int16).tobytes()
        name = names[k] if names else f"slice_{k:02d}.dcm"
        paths.append(save(ds, root / folder / name))
    return paths


def build_edge_corpus(root: Path) -> EdgeCorpus:
    """Every edge case in one cohort folder; see the README-like comments for why files were changed."""
    corpus = EdgeCorpus(root)
    ct_small = pydicom_file("CT_small.dcm")
    ct_hu = ct_small_hu()[None]

    # Real CT, as shipped.
    corpus.expect(_copy(ct_small, root, "real/CT_small.dcm").relative_to(root).as_posix(), "ingested", "ok")
    corpus.reference_hu["real/CT_small.dcm"] = ct_hu
    unc = pydicom_data_file("693_UNCR.dcm")
    _copy(unc, root, "real/693_UNCR.dcm")
    corpus.expect("real/693_UNCR.dcm", "ingested", "ok")
    # 693_*: real GE-style CT declaring Pixel Padding Value -2000 (stored), i.e. -3024 HU outside the FOV
    unc_hu = padded_to_air(hu_of(unc), -3024)[None]
    corpus.reference_hu["real/693_UNCR.dcm"] = unc_hu
    # The JPEG 2000 versions share 693_UNCR's series and position: new series UIDs keep them apart.
    for name, source in (
        ("693_J2KR.dcm", pydicom_data_file("693_J2KR.dcm")),
        ("693_J2KI.dcm", pydicom_file("693_J2KI.dcm")),
    ):
        save(renew(read(source)), root / "real" / name)
        corpus.expect(f"real/{name}", "ingested", "ok")
        corpus.reference_hu[f"real/{name}"] = unc_hu
    corpus.lossy.add("real/693_J2KI.dcm")
    bad_sequence = pydicom_data_file("bad_sequence.dcm")
    _copy(bad_sequence, root, "real/bad_sequence.dcm")  # JPEG Lossless CT
    corpus.expect("real/bad_sequence.dcm", "ingested", "ok")
    corpus.reference_hu["real/bad_sequence.dcm"] = hu_of(bad_sequence)[None]
    enhanced = pydicom_data_file("eCT_Supplemental.dcm")  # Enhanced CT, 2 frames, rescale in groups
    _copy(enhanced, root, "real/eCT_Supplemental.dcm")
    corpus.expect("real/eCT_Supplemental.dcm", "ingested", "ok")
    # Orientation (-1,0,0 / 0,1,0) makes the normal point to -z: frame 2 (z=-149) comes first geometrically.
    frames = read(enhanced).pixel_array.astype(np.int32) - 1024
    corpus.reference_hu["real/eCT_Supplemental.dcm"] = frames[::-1].astype(np.int16)

    # Transfer syntaxes derived from CT_small.
    ds = renew(read(ct_small))
    ds.compress(RLELossless)
    save(ds, root / "syntax/CT_small_rle.dcm")
    ds = renew(read(ct_small))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    save(ds, root / "syntax/CT_small_deflated.dcm")
    # pydicom writes big endian via dcmwrite only; native pixel bytes must be swapped by hand.
    ds = renew(read(ct_small))
    ds.PixelData = ds.pixel_array.astype(">i2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    save(ds, root / "syntax/CT_small_bigendian.dcm")
    for name in ("CT_small_rle.dcm", "CT_small_deflated.dcm", "CT_small_bigendian.dcm"):
        corpus.expect(f"syntax/{name}", "ingested", "ok")
        corpus.reference_hu[f"syntax/{name}"] = ct_hu
    # pydicom cannot encode JPEG-LS and ships no JPEG-LS CT: MR_small_jpeg_ls_lossless.dcm is relabelled
    # CT (it already carries position/orientation/spacing); its reference is the uncompressed MR_small.
    ds = renew(read(pydicom_file("MR_small_jpeg_ls_lossless.dcm")))
    ds.Modality = "CT"
    save(ds, root / "syntax/MR_small_jpeg_ls_as_CT.dcm")
    corpus.expect("syntax/MR_small_jpeg_ls_as_CT.dcm", "ingested", "ok")
    corpus.reference_hu["syntax/MR_small_jpeg_ls_as_CT.dcm"] = hu_of(pydicom_file("MR_small.dcm"))[None]

    # Broken or unusable files.
    data = ct_small.read_bytes()
    (root / "broken").mkdir(parents=True)
    (root / "broken/CT_small_truncated.dcm").write_bytes(data[: len(data) // 2])
    corpus.expect("broken/CT_small_truncated.dcm", "quarantined", "truncated")
    deflated = (root / "syntax/CT_small_deflated.dcm").read_bytes()
    (root / "broken/CT_small_deflated_truncated.dcm").write_bytes(deflated[: len(deflated) // 2])
    corpus.expect("broken/CT_small_deflated_truncated.dcm", "quarantined", "truncated")
    # A JPEG 2000 codestream cut after 64 bytes inside well-formed items: only decoding can tell.
    ds = renew(read(pydicom_data_file("693_J2KR.dcm")))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[:64]])
    save(ds, root / "broken/J2K_corrupt_codestream.dcm")
    corpus.expect("broken/J2K_corrupt_codestream.dcm", "quarantined", "undecodable")
    # MPEG-2: no installed decoder at all, known from the header.
    ds = renew(read(pydicom_data_file("693_J2KR.dcm")))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    save(ds, root / "broken/labelled_MPEG2.dcm")
    corpus.expect("broken/labelled_MPEG2.dcm", "quarantined", "undecodable")
    ds = renew(read(ct_small))
    grey = ds.pixel_array
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = np.repeat(grey[..., None], 3, axis=-1).astype(np.int16).tobytes()
    save(ds, root / "broken/CT_small_rgb.dcm")
    corpus.expect("broken/CT_small_rgb.dcm", "quarantined", "unsupported_pixels")
    ds = renew(read(ct_small))
    del ds.SeriesInstanceUID
    save(ds, root / "broken/CT_small_no_series_uid.dcm")
    corpus.expect("broken/CT_small_no_series_uid.dcm", "quarantined", "missing_series_uid")
    ds = renew(read(ct_small))
    del ds.ImagePositionPatient
    save(ds, root / "broken/CT_small_no_position.dcm")
    corpus.expect("broken/CT_small_no_position.dcm", "quarantined", "missing_geometry")

    # Not CT / not an image / not DICOM.
    for rel, source, reason in (
        ("other/MR_small.dcm", pydicom_file("MR_small.dcm"), "not_ct"),
        ("other/JPEG2000_NM.dcm", pydicom_file("JPEG2000.dcm"), "not_ct"),
        ("other/liver_SEG.dcm", pydicom_data_file("liver.dcm"), "not_ct"),
        ("other/rtplan.dcm", pydicom_file("rtplan.dcm"), "not_image"),
        ("other/rtstruct_no_preamble.dcm", pydicom_file("rtstruct.dcm"), "not_image"),
        ("other/test-SR.dcm", pydicom_file("test-SR.dcm"), "not_image"),
    ):
        _copy(source, root, rel)
        corpus.expect(rel, "quarantined", reason)
    _copy(dicomdir_file("DICOMDIR"), root, "media/DICOMDIR")
    corpus.expect("media/DICOMDIR", "ignored", "dicomdir")
    _copy(dicomdir_file("DICOMDIR-bigEnd"), root, "media/DICOMDIR-bigEnd")  # recognised by content
    corpus.expect("media/DICOMDIR-bigEnd", "ignored", "dicomdir")
    (root / "junk").mkdir()
    (root / "junk/random.bin").write_bytes(np.random.default_rng(7).bytes(4096))
    (root / "junk/notes.txt").write_text("scanner export log\nnothing to see here\n" * 20)
    (root / "junk/empty.dcm").write_bytes(b"")
    for rel in ("junk/random.bin", "junk/notes.txt", "junk/empty.dcm"):
        corpus.expect(rel, "quarantined", "not_dicom")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    corpus.expect(".DS_Store", "ignored", "hidden_file")
    (root / "annotations").mkdir()
    (root / "annotations/README.txt").write_text("labels would live here\n")
    corpus.expect("annotations/README.txt", "ignored", "annotation")

    # Series-level cases, each its own series built from CT_small at 5 mm steps.
    gap = _slice_series(root, "series_gap", 6, 5.0)
    gap[3].unlink()
    for path in gap[:3] + gap[4:]:
        corpus.expect(path.relative_to(root).as_posix(), "ingested", "ok")
    dup = _slice_series(root, "series_dup", 4, 5.0)
    shutil.copyfile(dup[2], root / "series_dup/slice_02_copy.dcm")  # sorts after slice_02: the dropped one
    for path in dup:
        corpus.expect(path.relative_to(root).as_posix(), "ingested", "ok")
    corpus.expect("series_dup/slice_02_copy.dcm", "quarantined", "duplicate_position")
    orient = _slice_series(root, "series_orient", 5, 5.0)
    ds = read(orient[4])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    save(ds, orient[4])
    for path in orient[:4]:
        corpus.expect(path.relative_to(root).as_posix(), "ingested", "ok")
    corpus.expect(orient[4].relative_to(root).as_posix(), "quarantined", "mixed_orientation")
    shape = _slice_series(root, "series_shape", 5, 5.0)
    ds = read(shape[1])
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:64, :64]).tobytes()  # decode before Rows changes
    ds.Rows, ds.Columns = 64, 64
    save(ds, shape[1])
    for path in shape[:1] + shape[2:]:
        corpus.expect(path.relative_to(root).as_posix(), "ingested", "ok")
    corpus.expect(shape[1].relative_to(root).as_posix(), "quarantined", "inconsistent_shape")
    return corpus


def build_pycerr_copy(root: Path, patients: tuple[str, ...] = PYCERR_PATIENTS) -> Path:
    for patient in patients:
        shutil.copytree(pycerr_root() / patient, root / patient)
    return root


def series_slices(folder: str, n: int = 6, step: float = 5.0, root: Path | None = None, **kw) -> list[Path]:
    """Public wrapper for tests that need a small synthetic CT series."""
    assert root is not None
    return _slice_series(root, folder, n, step, **kw)


# --- Scanner padding: real NSCLC CT (pycerr) with padding written outside a circular field of view -----------
#
# The NSCLC series are stored unsigned, 12 bits, intercept -1000, clipped at -1000 HU and without padding.
# The derived series keep every HU value of the original (stored values are re-based onto the new
# intercept) and replace the voxels outside the circle inscribed in the image by padding:
#   tag        signed, intercept -1024, Pixel Padding Value -2000 (stored) = -3024 HU (the GE convention)
#   tag_range  unsigned 16 bits, intercept -1024, Pixel Padding Value 65535 and Range Limit 63536 (given in
#              reverse order), padding spread over all of 63536..65535 (HU 62512..64511, beyond int16)
#   convention signed, intercept -1024, -2000 stored = -3024 HU, nothing declared
#   none       signed, intercept -1024, no padding at all (the plain control)

PADDING_MODES = ("tag", "tag_range", "convention", "none")
AIR_HU = -1000
GE_PADDING_STORED = -2000
RANGE_PADDING_STORED = (63536, 65535)
CORPUS_INTERCEPT = -1024


@dataclass
class PaddedSeries:
    """A derived series on disk and what ingestion must make of it."""

    folder: Path
    files: list[Path]
    mode: str
    expected_hu: np.ndarray  # the volume ingestion writes (slices in z order): padding already air
    padding_mask: np.ndarray  # where the padding was written
    padding_hu: tuple[int, int] | None  # expected padding_hu_min / padding_hu_max

    @property
    def padding_fraction(self) -> float:
        return float(self.padding_mask.mean())

    @property
    def tissue_hu_range(self) -> tuple[int, int]:
        """Expected hu_min / hu_max: the non-padding voxels only."""
        inside = self.expected_hu[~self.padding_mask]
        return int(inside.min()), int(inside.max())


def nsclc_ct_files(patient: str = "pat_2") -> list[Path]:
    """The CT slices of one real NSCLC series, in z order."""
    return sorted(pycerr_root().joinpath(patient).glob("DCM_IMG_*.dcm"), key=_z_of)


def _z_of(path: Path) -> float:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), np.cross(iop[:3], iop[3:])))


def outside_circle(rows: int, cols: int) -> np.ndarray:
    """Pixels outside the circle inscribed in the image: where scanners put padding."""
    r, c = np.ogrid[:rows, :cols]
    cy, cx, radius = (rows - 1) / 2, (cols - 1) / 2, min(rows, cols) / 2
    return (r - cy) ** 2 + (c - cx) ** 2 > radius**2


def _encode(ds: Dataset, hu: np.ndarray, outside: np.ndarray, mode: str, index: int) -> np.ndarray:
    """Store `hu` in `ds` with the mode's representation and padding; returns the stored array."""
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue", "PixelPaddingValue", "PixelPaddingRangeLimit"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.RescaleSlope, ds.RescaleIntercept = 1, CORPUS_INTERCEPT
    stored = hu.astype(np.int64) - CORPUS_INTERCEPT
    if mode == "tag_range":
        ds.PixelRepresentation = 0
        low, high = RANGE_PADDING_STORED
        fill = low + (np.arange(outside.sum()) + index) % (high - low + 1)
        stored[outside] = fill
        ds.add_new(0x00280120, "US", high)  # value and limit in reverse order: either order is valid
        ds.add_new(0x00280121, "US", low)
        array = stored.astype(np.uint16)
    else:
        ds.PixelRepresentation = 1
        if mode in ("tag", "convention"):
            stored[outside] = GE_PADDING_STORED
        if mode == "tag":
            ds.add_new(0x00280120, "SS", GE_PADDING_STORED)
        array = stored.astype(np.int16)
    ds.PixelData = array.tobytes()
    return array


def _write_series(
    root: Path, folder: str, sources: list[Path], mode: str, crop: tuple[int, int, int, int] | None = None
) -> PaddedSeries:
    """Derive one series from `sources` (z order); `crop` = (row0, col0, rows, cols) cuts a region out."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding mode must be one of {PADDING_MODES}, got {mode!r}")
    series_uid = generate_uid()
    files, volume, masks = [], [], []
    for index, source in enumerate(sources):
        ds = renew(read(source), series_uid)
        hu = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        if crop is not None:
            row0, col0, rows, cols = crop
            hu = hu[row0 : row0 + rows, col0 : col0 + cols]
            iop = np.array(ds.ImageOrientationPatient, dtype=float)
            dy, dx = (float(v) for v in ds.PixelSpacing)
            origin = np.array(ds.ImagePositionPatient, dtype=float) + col0 * dx * iop[:3] + row0 * dy * iop[3:]
            ds.ImagePositionPatient = [round(float(v), 4) for v in origin]
            ds.Rows, ds.Columns = rows, cols
        outside = outside_circle(*hu.shape) if mode != "none" else np.zeros(hu.shape, dtype=bool)
        _encode(ds, hu, outside, mode, index)
        files.append(save(ds, root / folder / f"slice_{index:03d}.dcm"))
        volume.append(np.where(outside, AIR_HU, hu).astype(np.int16))
        masks.append(outside)
    padding_hu = {
        "tag": (GE_PADDING_STORED + CORPUS_INTERCEPT,) * 2,
        "convention": (GE_PADDING_STORED + CORPUS_INTERCEPT,) * 2,
        "tag_range": tuple(v + CORPUS_INTERCEPT for v in RANGE_PADDING_STORED),
    }.get(mode)
    return PaddedSeries(root / folder, files, mode, np.stack(volume), np.stack(masks), padding_hu)


def write_padded_series(
    root: Path, folder: str, mode: str, *, patient: str = "pat_2", n_slices: int | None = None
) -> PaddedSeries:
    """A real NSCLC CT series with padding outside its circular field of view (see PADDING_MODES)."""
    return _write_series(root, folder, nsclc_ct_files(patient)[:n_slices], mode)


LIMB_PATIENT, LIMB_BOX, LIMB_SLICES = "pat_1", 64, 20


def _interior_box(volume: np.ndarray, size: int, n_slices: int) -> tuple[int, int, int]:
    """(first slice, row0, col0) of the size x size x n_slices block whose lowest HU is highest."""
    from numpy.lib.stride_tricks import sliding_window_view

    best: tuple[int, int, int, int] | None = None
    for z0 in range(volume.shape[0] - n_slices + 1):
        lowest = sliding_window_view(volume[z0 : z0 + n_slices].min(axis=0), (size, size)).min(axis=(2, 3))
        row0, col0 = np.unravel_index(int(np.argmax(lowest)), lowest.shape)
        if best is None or lowest[row0, col0] > best[0]:
            best = (int(lowest[row0, col0]), z0, int(row0), int(col0))
    assert best is not None
    return best[1:]


def write_limb_series(root: Path, folder: str, *, padding: str = "convention") -> PaddedSeries:
    """A "limb" or cropped scan: a real chest CT cut down to a 64 x 64 x 20 block of body interior (soft
    tissue, fat and bone; its lowest HU is about -180, no air, no lung), with `padding` outside the circle
    inscribed in it (see PADDING_MODES). Cropped the way a small-field reconstruction would be:
    ImagePositionPatient moves to the block's first voxel."""
    sources = nsclc_ct_files(LIMB_PATIENT)
    volume = np.stack([read(p).pixel_array.astype(np.int64) - 1000 for p in sources])  # NSCLC: slope 1, -1000
    z0, row0, col0 = _interior_box(volume, LIMB_BOX, LIMB_SLICES)
    crop = (row0, col0, LIMB_BOX, LIMB_BOX)
    return _write_series(root, folder, sources[z0 : z0 + LIMB_SLICES], padding, crop)


@dataclass
class PaddingCorpus:
    root: Path
    series: dict[str, PaddedSeries]  # by folder name


def build_padding_corpus(root: Path, n_slices: int | None = None) -> PaddingCorpus:
    """A cohort folder of real CT with scanner padding, for own-DICOM end-to-end tests:
    `declared/` (Pixel Padding Value), `declared_range/` (with Range Limit), `undeclared/` (-3024 HU corners,
    nothing declared), `plain/` (the same real CT without padding) and `limb/` (a cropped body-interior scan
    with undeclared padding: no air at all once padding is set aside). Each is a new series of its source
    patient (pat_2; pat_1 for `limb`); `n_slices` shortens the first four."""
    root = Path(root)
    series = {
        "declared": write_padded_series(root, "declared", "tag", n_slices=n_slices),
        "declared_range": write_padded_series(root, "declared_range", "tag_range", n_slices=n_slices),
        "undeclared": write_padded_series(root, "undeclared", "convention", n_slices=n_slices),
        "plain": write_padded_series(root, "plain", "none", n_slices=n_slices),
        "limb": write_limb_series(root, "limb"),
    }
    return PaddingCorpus(root, series)
