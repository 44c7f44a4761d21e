"""Scanner padding: voxels outside the reconstructed field of view, which are not tissue and not air.

Scanners fill the corners outside the circular field of view (and sometimes cropped or table-removed
regions) with a fixed value far below air. Left in, it drags `hu_min` to -3024 or so (failing the air
check) and puts a fake "blacker than air" region into every window. So padding is recognised here, kept
out of HU statistics, and written as air (AIR_HU) in the volumes.

How padding is recognised, per series, first rule that finds any voxel:

1. Declared (`tag` / `tag_range`): Pixel Padding Value (0028,0120), with Pixel Padding Range Limit
   (0028,0121) when present; both are in *stored* pixel units, before rescale (PS3.3 C.7.5.1.1.2), and
   with a range limit every stored value between the two, inclusive and in either order, is padding.
   Their VR is US or SS by Pixel Representation, so the raw bytes are read with the pixel data's own
   signedness. In lossily compressed files (Lossy Image Compression "01") the codec smears the padding
   edge into values between the padding value and air: when the declared padding lies below
   PHYSICAL_MIN_HU, every voxel below PHYSICAL_MIN_HU in that file counts as padding too.
2. Undeclared (`convention` for -3024, -2048, -2000 HU; `plateau` for any other value): a value below
   PHYSICAL_MIN_HU that forms a plateau - many voxels at exactly that value and at least PLATEAU_RATIO
   times more of them than of any other value within PLATEAU_WINDOW HU. Real air is around -1000 with
   noise: below -1024 it is a smooth tail where neighbouring values are about equally frequent, so it is
   never a plateau. A fill value is a spike with (almost) empty neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from cssl_core.ingest.records import DeclaredPadding

PADDING_VALUE_TAG = 0x00280120
PADDING_RANGE_LIMIT_TAG = 0x00280121
AIR_HU = -1000  # what padding voxels become in the written volume
PHYSICAL_MIN_HU = -1024  # nothing physical is below this (air is -1000; -1024 is the usual stored floor)
CONVENTION_HU = (-3024, -2048, -2000)  # undeclared padding values used by scanner vendors
PLATEAU_WINDOW = 16  # HU either side compared with a candidate value
PLATEAU_RATIO = 20  # a plateau holds this many times more voxels than any neighbouring value
PLATEAU_MIN_FRACTION = 1e-4  # a non-conventional plateau covers at least this share of the volume
PLATEAU_MIN_VOXELS = 16
INT16_MIN = -32768
COUNT_CHUNK_VOXELS = 1 << 22

NONE, TAG, TAG_RANGE, CONVENTION, PLATEAU = "none", "tag", "tag_range", "convention", "plateau"


@dataclass(frozen=True, slots=True)
class PaddingReport:
    """What the manifest says about one series' padding."""

    source: str
    hu_min: int | None  # lowest HU among padding voxels, before they became air (not clipped to int16)
    hu_max: int | None
    fraction: float  # share of the volume's voxels


NO_PADDING = PaddingReport(NONE, None, None, 0.0)


def _stored_value(ds: Dataset, tag: int, signed: bool) -> int | None:
    """A US/SS value as the pixel data reads it: the raw bit pattern, signed when the pixels are."""
    elem = ds.get_item(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        raw, little = elem.value, elem.is_little_endian
    else:
        value = ds[tag].value
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value is None or value == b"" or value == "":
            return None
        if isinstance(value, bytes):
            raw, little = value, True
        else:
            try:
                raw, little = (int(value) & 0xFFFF).to_bytes(2, "little"), True
            except (TypeError, ValueError):
                return None
    if not raw or len(raw) not in (2, 4):
        return None
    bits = 8 * len(raw)
    pattern = int.from_bytes(raw, "little" if little else "big", signed=False)
    return pattern - (1 << bits) if signed and pattern >= 1 << (bits - 1) else pattern


def declared_padding(ds: Dataset, signed: bool) -> DeclaredPadding | None:
    """The file's declared padding in stored units, or None (absent or unreadable: then undeclared)."""
    value = _stored_value(ds, PADDING_VALUE_TAG, signed)
    if value is None:
        return None
    limit = _stored_value(ds, PADDING_RANGE_LIMIT_TAG, signed)
    if limit is None:
        return DeclaredPadding(value, value, False)
    return DeclaredPadding(min(value, limit), max(value, limit), True)


def declared_mask(
    stored: np.ndarray,
    hu: np.ndarray,
    declared: DeclaredPadding,
    slopes: tuple[float, ...],
    intercepts: tuple[float, ...],
    lossy: bool,
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Padding voxels of one file (frames, rows, cols) and the HU range they held (None if none)."""
    if declared.low == declared.high:
        mask = stored == declared.low
    else:
        mask = (stored >= declared.low) & (stored <= declared.high)
    if lossy and max(_hu(declared.high, s, i) for s, i in zip(slopes, intercepts, strict=True)) < PHYSICAL_MIN_HU:
        mask |= hu < PHYSICAL_MIN_HU
    if not mask.any():
        return mask, None
    lows, highs = [], []
    for frame, (slope, intercept) in enumerate(zip(slopes, intercepts, strict=True)):
        values = stored[frame][mask[frame]]
        if values.size:
            ends = (_hu(int(values.min()), slope, intercept), _hu(int(values.max()), slope, intercept))
            lows.append(min(ends))
            highs.append(max(ends))
    return mask, (min(lows), max(highs))


def _hu(stored: int, slope: float, intercept: float) -> int:
    return int(np.rint(stored * float(slope) + float(intercept)))


def _low_counts(volume: np.ndarray) -> np.ndarray:
    """Voxel counts of every int16 value below PHYSICAL_MIN_HU + PLATEAU_WINDOW (index = value + 32768),
    counted a few slices at a time so that a large volume needs no large temporary arrays."""
    limit = PHYSICAL_MIN_HU + PLATEAU_WINDOW
    counts = np.zeros(limit - INT16_MIN, dtype=np.int64)
    flat = volume.reshape(volume.shape[0], -1) if volume.ndim > 1 else volume.reshape(1, -1)
    step = max(1, COUNT_CHUNK_VOXELS // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], step):
        chunk = flat[start : start + step]
        low = chunk[chunk < limit]
        if low.size:
            counts += np.bincount(low.astype(np.int32) - INT16_MIN, minlength=counts.size)
    return counts


def plateau_values(volume: np.ndarray) -> list[int]:
    """HU values below PHYSICAL_MIN_HU that are plateaus (see the module docstring), in ascending order."""
    if volume.size == 0:
        return []
    counts = _low_counts(volume)
    candidates = counts[: PHYSICAL_MIN_HU - INT16_MIN]
    if not candidates.any():
        return []
    padded = np.pad(counts, PLATEAU_WINDOW)
    windows = sliding_window_view(padded, 2 * PLATEAU_WINDOW + 1)  # windows[i] is centred on counts[i]
    neighbours = np.maximum(windows[:, :PLATEAU_WINDOW].max(axis=1), windows[:, PLATEAU_WINDOW + 1 :].max(axis=1))
    spikes = np.flatnonzero(candidates > PLATEAU_RATIO * neighbours[: candidates.size])
    min_count = max(PLATEAU_MIN_VOXELS, PLATEAU_MIN_FRACTION * volume.size)
    found = []
    for index in spikes:
        value = int(index) + INT16_MIN
        if value in CONVENTION_HU or counts[index] >= min_count:
            found.append(value)
    return found


def undeclared_mask(volume: np.ndarray) -> tuple[np.ndarray | None, PaddingReport]:
    """Padding found by convention or plateau in an HU volume; (None, NO_PADDING) when there is none."""
    values = plateau_values(volume)
    if not values:
        return None, NO_PADDING
    mask = volume == values[0]  # a few comparisons: much faster than np.isin on a whole volume
    for value in values[1:]:
        mask |= volume == value
    source = CONVENTION if all(v in CONVENTION_HU for v in values) else PLATEAU
    return mask, PaddingReport(source, values[0], values[-1], float(mask.mean()))


class PaddingCollector:
    """Gathers declared padding file by file while a series is decoded, then settles the series."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.mask: np.ndarray | None = None
        self.hu_ranges: list[tuple[int, int]] = []
        self.sources: set[str] = set()

    def add(
        self,
        placements: list[tuple[int, int]],
        stored: np.ndarray,
        hu: np.ndarray,
        declared: DeclaredPadding | None,
        rescale: tuple[tuple[float, ...], tuple[float, ...]],
        lossy: bool,
    ) -> None:
        """One decoded file: `placements` maps (volume index, file frame) as the series is sorted."""
        if declared is None:
            return
        mask, hu_range = declared_mask(stored, hu, declared, rescale[0], rescale[1], lossy)
        if hu_range is None:
            return
        if self.mask is None:
            self.mask = np.zeros(self.shape, dtype=bool)
        for index, frame in placements:
            self.mask[index] = mask[frame]
        self.hu_ranges.append(hu_range)
        self.sources.add(TAG_RANGE if declared.is_range else TAG)

    def settle(self, volume: np.ndarray, keep: list[int] | None = None) -> tuple[np.ndarray | None, PaddingReport]:
        """The series' padding mask and report: declared padding if any voxel matched, else undeclared.
        `keep` selects the volume's slices when some files failed to decode."""
        mask = self.mask if self.mask is None or keep is None else self.mask[keep]
        if mask is None or not mask.any():
            return undeclared_mask(volume)
        source = TAG_RANGE if TAG_RANGE in self.sources else TAG
        lows, highs = zip(*self.hu_ranges, strict=True)
        return mask, PaddingReport(source, min(lows), max(highs), float(mask.mean()))


def to_air(volume: np.ndarray, mask: np.ndarray | None) -> None:
    """Padding becomes air in place, so no window ever sees the fill value."""
    if mask is not None:
        volume[mask] = AIR_HU


def tissue_hu_range(volume: np.ndarray, mask: np.ndarray | None) -> tuple[int, int]:
    """(min, max) HU over the voxels that are not padding; air both ways for an all-padding volume."""
    if mask is None:
        return int(volume.min()), int(volume.max())
    inside = ~mask
    if not inside.any():
        return AIR_HU, AIR_HU
    info = np.iinfo(volume.dtype)
    return int(volume.min(where=inside, initial=info.max)), int(volume.max(where=inside, initial=info.min))
