"""Build one series: reject misfits, sort geometrically, decode, turn padding into air, write the volume
(and mask).

Runs inside a worker process, one call per series, so it only touches its own files and its own output
paths; everything it decides comes back as plain rows (SeriesResult) for the parent to assemble.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from cssl_core.ingest import geometry
from cssl_core.ingest.masks import MaskBuilder, slice_labels
from cssl_core.ingest.messages import among_series, error_name, message
from cssl_core.ingest.padding import PaddingCollector, PaddingReport, tissue_hu_range, to_air
from cssl_core.ingest.pixels import read_stored, to_hu
from cssl_core.ingest.reasons import FileStatus, Reason
from cssl_core.ingest.records import FileOutcome, ImageRecord, SeriesResult, SeriesTask
from cssl_core.ingest.writer import VolumeGeometry, volume_name, write_volume

VOLUMES_DIR = "volumes"
MASKS_DIR = "masks"
T = TypeVar("T")


@dataclass(slots=True)
class _Slot:
    """One slice of the volume: a frame of a file, at coordinate z along the slice normal."""

    z: float
    image: ImageRecord
    frame: int


def _clusters(items: Sequence[T], key: Callable[[T], Hashable], same: Callable) -> list[list[T]]:
    """Group items whose keys are `same`, in first-seen order (items come sorted by path: deterministic)."""
    groups: list[tuple[Hashable, list[T]]] = []
    for item in items:
        value = key(item)
        for representative, members in groups:
            if same(representative, value):
                members.append(item)
                break
        else:
            groups.append((value, [item]))
    return [members for _, members in groups]


def _keep_majority(
    images: list[ImageRecord],
    key: Callable[[ImageRecord], Hashable],
    same: Callable,
    reason: Reason,
    what: str,
    outcomes: dict[str, FileOutcome],
    series_key: str,
) -> list[ImageRecord]:
    """Keep the largest group (ties: the group seen first); quarantine the rest with `reason`."""
    groups = _clusters(images, key, same)
    if len(groups) == 1:
        return images
    keep = max(groups, key=len)  # max() returns the first of equally large groups
    others = len(images) - 1
    for group in groups:
        if group is keep:
            continue
        for image in group:
            text = message(reason, what=what, context=among_series(others))
            outcomes[image.path] = FileOutcome(image.path, FileStatus.QUARANTINED, reason, text, series_key)
    return keep


def _consistent(images: list[ImageRecord], outcomes: dict[str, FileOutcome], key: str) -> list[ImageRecord]:
    images = _keep_majority(
        images,
        lambda r: (r.pixel.rows, r.pixel.cols),
        lambda a, b: a == b,
        Reason.INCONSISTENT_SHAPE,
        "image size (rows x columns)",
        outcomes,
        key,
    )
    images = _keep_majority(
        images, lambda r: r.orientation, geometry.same_orientation, Reason.MIXED_ORIENTATION, "", outcomes, key
    )
    return _keep_majority(
        images,
        lambda r: r.pixel_spacing,
        lambda a, b: max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-4 * max(max(a), 1.0),
        Reason.INCONSISTENT_SHAPE,
        "pixel spacing",
        outcomes,
        key,
    )


def _sorted_slots(images: list[ImageRecord]) -> list[_Slot]:
    orientation = images[0].orientation
    slots = []
    for image in images:
        z = geometry.project(image.positions, orientation)
        slots.extend(_Slot(float(z[i]), image, i) for i in range(len(image.positions)))
    slots.sort(key=lambda s: (s.z, s.image.path, s.frame))
    return slots


def _drop_duplicates(slots: list[_Slot], outcomes: dict[str, FileOutcome], key: str) -> tuple[list[_Slot], dict]:
    """Drop slices repeating an earlier position; a file losing all its slices is quarantined."""
    duplicate = geometry.duplicate_mask(np.array([s.z for s in slots]))
    kept = [s for s, dup in zip(slots, duplicate, strict=True) if not dup]
    dropped: dict[str, int] = {}
    for slot, dup in zip(slots, duplicate, strict=True):
        if dup:
            dropped[slot.image.path] = dropped.get(slot.image.path, 0) + 1
    surviving = {s.image.path for s in kept}
    for path in dropped:
        if path not in surviving:
            text = message(Reason.DUPLICATE_POSITION)
            outcomes[path] = FileOutcome(path, FileStatus.QUARANTINED, Reason.DUPLICATE_POSITION, text, key)
    return kept, dropped


def _decode_into(
    task: SeriesTask, slots: list[_Slot], outcomes: dict[str, FileOutcome]
) -> tuple[np.ndarray, list[_Slot], np.ndarray | None, PaddingReport]:
    """Decode each file once and place its frames at their sorted indices; drop files that fail.
    Padding is recognised on the way (see padding.py) and comes back as a mask with its report."""
    first = slots[0].image.pixel
    volume = np.empty((len(slots), first.rows, first.cols), dtype=np.int16)
    padding = PaddingCollector(volume.shape)
    positions: dict[str, list[tuple[int, int]]] = {}
    images: dict[str, ImageRecord] = {}
    for index, slot in enumerate(slots):
        positions.setdefault(slot.image.path, []).append((index, slot.frame))
        images[slot.image.path] = slot.image
    failed: set[str] = set()
    root = Path(task.input_dir)
    for path in sorted(positions):
        image = images[path]
        try:
            stored = read_stored(root / path, image.pixel)
            hu = np.empty(stored.shape, dtype=np.int16)
            to_hu(stored, image.slopes, image.intercepts, hu)
        except EOFError:
            failed.add(path)
            text = message(Reason.TRUNCATED, part="pixel data")
            outcomes[path] = FileOutcome(path, FileStatus.QUARANTINED, Reason.TRUNCATED, text, task.series_key)
            continue
        except Exception as exc:  # noqa: BLE001 - any decoder failure only loses this file
            failed.add(path)
            text = message(Reason.UNDECODABLE, syntax=image.pixel.syntax_name, error=error_name(exc))
            outcomes[path] = FileOutcome(path, FileStatus.QUARANTINED, Reason.UNDECODABLE, text, task.series_key)
            continue
        for index, frame in positions[path]:
            volume[index] = hu[frame]
        rescale = (image.slopes, image.intercepts)
        padding.add(positions[path], stored, hu, image.pixel.padding, rescale, image.pixel.lossy)
    if not failed:
        return volume, slots, *padding.settle(volume)
    keep = [i for i, s in enumerate(slots) if s.image.path not in failed]
    volume = volume[keep]
    return volume, [slots[i] for i in keep], *padding.settle(volume, keep)


def _masks(task: SeriesTask, slots: list[_Slot]) -> tuple[MaskBuilder, dict[str, str]]:
    """Mask slices placed at their sorted index; notes for files whose mask could not be used.
    Masks are per file (one frame), so multi-frame files take labels but no mask."""
    first = slots[0].image.pixel
    masks = MaskBuilder(Path(task.input_dir), len(slots), first.rows, first.cols)
    notes: dict[str, str] = {}
    for index, slot in enumerate(slots):
        row = task.annotations.get(slot.image.path)
        if row is not None and slot.image.pixel.frames == 1:
            note = masks.place(index, row)
            if note:
                notes[slot.image.path] = note
    return masks, notes


def _ingested(task: SeriesTask, slots: list[_Slot], dropped: dict[str, int], notes: dict[str, str]) -> list:
    frames_per_file = Counter(s.image.path for s in slots)
    outcomes = []
    for path, image in {s.image.path: s.image for s in slots}.items():
        note = f"; {dropped[path]} duplicate frame(s) dropped" if path in dropped else ""
        note += f"; {notes[path]}, mask ignored" if path in notes else ""
        text = message(Reason.OK, frames=frames_per_file[path], syntax=image.pixel.syntax_name, note=note)
        outcomes.append(FileOutcome(path, FileStatus.INGESTED, Reason.OK, text, task.series_key))
    return outcomes


def content_digest(volume: np.ndarray) -> str:
    """SHA-256 (hex, 32 chars) of the HU voxels and their shape: the secret-free sort key of a series.

    Tables are ordered by it, not by the keyed series hash, so that slice order, train/validation splits and
    probe folds - all seeded permutations of that order - come out the same at every site running the same
    data, whatever its key secret. It names pixel content, which the windowed slices hold anyway; it links
    nothing that those slices do not already link.
    """
    digest = hashlib.sha256(np.ascontiguousarray(volume, dtype=np.int16).tobytes())
    digest.update(repr(volume.shape).encode())
    return digest.hexdigest()[:32]


def _manifest_row(
    task: SeriesTask,
    slots: list[_Slot],
    volume: np.ndarray,
    spacing: geometry.SpacingReport,
    paths: tuple,
    padding: tuple[np.ndarray | None, PaddingReport],
) -> dict:
    first = slots[0].image
    images = {s.image.path: s.image for s in slots}.values()
    mask, report = padding
    hu_min, hu_max = tissue_hu_range(volume, mask)
    return {
        "series_key": task.series_key,
        "patient_key": task.patient_key,
        "content_digest": content_digest(volume),
        "modality": first.modality,
        "n_slices": len(slots),
        "rows": first.pixel.rows,
        "cols": first.pixel.cols,
        "spacing_x": float(first.pixel_spacing[1]),
        "spacing_y": float(first.pixel_spacing[0]),
        "spacing_z": float(spacing.spacing),
        "slice_thickness": first.slice_thickness,
        "hu_min": hu_min,
        "hu_max": hu_max,
        "padding_source": report.source,
        "padding_hu_min": report.hu_min,
        "padding_hu_max": report.hu_max,
        "padding_fraction": report.fraction,
        "volume_path": paths[0],
        "mask_path": paths[1],
        "n_files": len(images),
        "is_multiframe": any(image.is_multiframe for image in images),
        "transfer_syntaxes": ";".join(sorted({image.pixel.syntax_name for image in images})),
        "spacing_uneven": spacing.uneven,
        "has_gaps": spacing.has_gaps,
    }


def _slice_rows(task: SeriesTask, slots: list[_Slot], has_mask: np.ndarray) -> list[dict]:
    rows = []
    for index, slot in enumerate(slots):
        row = {
            "series_key": task.series_key,
            "patient_key": task.patient_key,
            "slice_index": index,
            "z_mm": float(slot.z - slots[0].z),
        }
        row.update(slice_labels(task.label_columns, task.annotations.get(slot.image.path)))
        row["has_mask"] = bool(has_mask[index])
        rows.append(row)
    return rows


def build_series(task: SeriesTask) -> SeriesResult:
    """Turn one series' header records into a volume on disk plus manifest, slice and file rows."""
    outcomes: dict[str, FileOutcome] = {}
    images = _consistent(sorted(task.images, key=lambda r: r.path), outcomes, task.series_key)
    slots, dropped = _drop_duplicates(_sorted_slots(images), outcomes, task.series_key)
    volume, slots, padding_mask, padding_report = _decode_into(task, slots, outcomes)
    if not slots:
        return SeriesResult(task.series_key, sorted(outcomes.values(), key=lambda o: o.path))

    first = slots[0].image
    spacing = geometry.analyse_spacing(np.array([s.z for s in slots]), first.slice_thickness or 1.0)
    grid = VolumeGeometry(
        spacing=(first.pixel_spacing[1], first.pixel_spacing[0], spacing.spacing),
        origin=first.positions[slots[0].frame],
        direction=geometry.direction(first.orientation),
    )
    to_air(volume, padding_mask)  # before the digest: it names the volume as written
    out, name = Path(task.output_dir), volume_name(task.series_key, task.compress)
    volume_path = f"{VOLUMES_DIR}/{name}"
    write_volume(volume, grid, out / volume_path, task.compress)
    masks, notes = _masks(task, slots)
    mask_path = f"{MASKS_DIR}/{name}" if masks.any else None
    if mask_path:
        write_volume(masks.volume, grid, out / mask_path, task.compress)

    outcomes.update((o.path, o) for o in _ingested(task, slots, dropped, notes))
    return SeriesResult(
        task.series_key,
        sorted(outcomes.values(), key=lambda o: o.path),
        _manifest_row(task, slots, volume, spacing, (volume_path, mask_path), (padding_mask, padding_report)),
        _slice_rows(task, slots, masks.has_mask),
    )
