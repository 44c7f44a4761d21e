"""Per-frame geometry and rescale, wherever the file keeps them.

Classic CT keeps ImagePositionPatient, RescaleSlope etc. at the top level; enhanced multi-frame CT keeps
them in functional groups (per-frame first, then shared). Reading both through one function means the
rest of the pipeline sees every frame the same way, whatever the IOD.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from cssl_core.ingest.fields import Header

SHARED_GROUPS = 0x52009229  # SharedFunctionalGroupsSequence
PER_FRAME_GROUPS = 0x52009230  # PerFrameFunctionalGroupsSequence
# attribute -> (functional group sequence holding it, number of values)
GROUPED = {
    "ImagePositionPatient": ("PlanePositionSequence", 3),
    "ImageOrientationPatient": ("PlaneOrientationSequence", 6),
    "PixelSpacing": ("PixelMeasuresSequence", 2),
    "SliceThickness": ("PixelMeasuresSequence", 1),
    "RescaleSlope": ("PixelValueTransformationSequence", 1),
    "RescaleIntercept": ("PixelValueTransformationSequence", 1),
}


@dataclass(slots=True)
class FrameAttributes:
    """Per-frame values; None where the file does not say (the caller decides what that means)."""

    positions: list[tuple[float, ...] | None]
    orientations: list[tuple[float, ...] | None]
    spacings: list[tuple[float, ...] | None]
    thicknesses: list[float | None]
    slopes: list[float]
    intercepts: list[float]


def _group_floats(item: Dataset | None, keyword: str) -> tuple[float, ...] | None:
    if item is None:
        return None
    sequence, count = GROUPED[keyword]
    inner = item.get(sequence)
    return Header(inner[0]).floats(keyword, count) if inner else None


def _items(ds: Dataset, tag: int) -> list[Dataset]:
    """Items of a sequence, [] when absent (checked without converting anything else)."""
    return list(ds[tag].value or []) if ds.get_item(tag) is not None else []


def _scalar(values: tuple[float, ...] | None) -> float | None:
    return values[0] if values else None


def frame_attributes(ds: Dataset, n_frames: int) -> FrameAttributes:
    """Collect position, orientation, spacing, thickness and rescale for each of the file's frames.

    Lookup order per attribute: per-frame functional group, shared functional group, top level. A
    top-level position only describes the first frame: a classic multi-frame file without per-frame
    positions has unknown geometry for the others (reported as None). A missing or zero slope means 1.
    """
    top = Header(ds)
    shared_items = _items(ds, SHARED_GROUPS)
    per_frame = _items(ds, PER_FRAME_GROUPS)
    shared = shared_items[0] if shared_items else None

    def pick(index: int, keyword: str, top_level: bool = True) -> tuple[float, ...] | None:
        if shared is not None or per_frame:
            item = per_frame[index] if index < len(per_frame) else None
            value = _group_floats(item, keyword) or _group_floats(shared, keyword)
            if value is not None:
                return value
        return top.floats(keyword, GROUPED[keyword][1]) if top_level else None

    attrs = FrameAttributes([], [], [], [], [], [])
    for i in range(n_frames):
        attrs.positions.append(pick(i, "ImagePositionPatient", top_level=i == 0))
        attrs.orientations.append(pick(i, "ImageOrientationPatient"))
        attrs.spacings.append(pick(i, "PixelSpacing"))
        attrs.thicknesses.append(_scalar(pick(i, "SliceThickness")))
        slope = _scalar(pick(i, "RescaleSlope"))
        attrs.slopes.append(slope if slope else 1.0)
        attrs.intercepts.append(_scalar(pick(i, "RescaleIntercept")) or 0.0)
    return attrs
