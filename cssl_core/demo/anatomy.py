"""A random chest per patient, in HU, before findings and scanner noise.

The point is not anatomical fidelity but the HU structure that makes lung and mediastinal windows
different domains: large air-filled lungs with faint texture and small vessels (the lung window's
business), and a soft-tissue mediastinum crowded with contrast-filled vessels and bone (the mediastinal
window's business). Sizes and positions vary per patient and drift along z so that slices are not copies
of each other. A tissue label map is returned beside the HU so that findings can be placed in the right
compartment without guessing from HU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from cssl_core.demo.shapes import Blob, Grid, smooth_noise, tube_weight

AIR_HU = -1000.0


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    MEDIASTINUM = 3
    LUNG = 4
    LUNG_VESSEL = 5
    AIRWAY_WALL = 6
    AIRWAY_LUMEN = 7
    HEART_WALL = 8
    CONTRAST = 9
    CORTICAL_BONE = 10
    CANCELLOUS_BONE = 11
    CSF = 12


# HU bands of each tissue (min, max): textures are clipped into them so the bands hold in a noiseless volume.
BANDS: dict[Tissue, tuple[float, float]] = {
    Tissue.FAT: (-120.0, -80.0),
    Tissue.MUSCLE: (35.0, 55.0),
    Tissue.MEDIASTINUM: (45.0, 60.0),
    Tissue.LUNG: (-900.0, -800.0),
    Tissue.CONTRAST: (150.0, 165.0),
    Tissue.CANCELLOUS_BONE: (200.0, 400.0),
    Tissue.CORTICAL_BONE: (700.0, 1000.0),
}


@dataclass
class Chest:
    """HU (float32), tissue labels (uint8) and the contrast-filled vessels findings may sit beside."""

    hu: np.ndarray
    tissue: np.ndarray
    contrast_vessels: list[Blob] = field(default_factory=list)


def build_chest(rng: np.random.Generator, grid: Grid) -> Chest:
    """One patient's chest; all sizes in mm (so cohorts with other pixel spacings show the same bodies)."""
    n = grid.n_slices
    t = grid.t
    hu = np.full(grid.shape, AIR_HU, dtype=np.float32)
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    chest = Chest(hu, tissue)

    def paint(mask: np.ndarray, kind: Tissue, value: float | np.ndarray) -> None:
        hu[mask] = value[mask] if isinstance(value, np.ndarray) else value
        tissue[mask] = kind

    def textured(kind: Tissue, sd: float, sigma_mm: float) -> np.ndarray:
        lo, hi = BANDS[kind]
        base = rng.uniform(lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))
        return np.clip(base + sd * smooth_noise(rng, grid, sigma_mm), lo, hi)

    def drift(amplitude_mm: float) -> np.ndarray:
        """A slow random wander along z, so structures move between slices like real anatomy."""
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
        return amplitude_mm * np.sin(2 * np.pi * freq * t + phase)

    # Body wall: fat then muscle shells around the thoracic cavity.
    fov = grid.fov_mm
    body_a = fov * rng.uniform(0.40, 0.45) * (0.95 + 0.05 * np.sin(np.pi * t))
    body_b = body_a * rng.uniform(0.62, 0.72)
    cx, cy = fov * rng.uniform(-0.02, 0.02) + drift(1.5), fov * rng.uniform(-0.03, 0.03) + drift(1.5)
    fat, muscle = rng.uniform(6.0, 18.0), rng.uniform(6.0, 12.0)
    cav_a, cav_b = body_a - fat - muscle, body_b - fat - muscle
    paint(Blob.make(n, cx, cy, body_a, body_b).mask(grid), Tissue.FAT, textured(Tissue.FAT, 6.0, 8.0))
    paint(Blob.make(n, cx, cy, body_a - fat, body_b - fat).mask(grid), Tissue.MUSCLE, textured(Tissue.MUSCLE, 4, 6))
    cavity = Blob.make(n, cx, cy, cav_a, cav_b)
    paint(cavity.mask(grid), Tissue.MUSCLE, textured(Tissue.MUSCLE, 4, 6))  # chest wall where no lung is

    # Mediastinal structures (positions as fractions of the cavity, y < 0 is anterior).
    t_heart = rng.uniform(0.38, 0.5)
    t_arch = rng.uniform(0.12, 0.22)
    t_carina = t_arch + rng.uniform(0.12, 0.2)
    heart_scale = np.clip((t - t_heart) / 0.2, 0.0, 1.0) * 0.55 + 0.45
    heart_scale = np.where(t >= t_heart, heart_scale * (1.0 - 0.25 * np.clip((t - 0.85) / 0.15, 0, 1)), 0.0)
    heart = Blob.make(
        n,
        cx + cav_a * rng.uniform(0.08, 0.16) + drift(2.0),
        cy - cav_b * rng.uniform(0.10, 0.2),
        cav_a * rng.uniform(0.28, 0.34) * heart_scale,
        cav_b * rng.uniform(0.36, 0.44) * heart_scale,
        theta=rng.uniform(-0.6, -0.2),
        present=t >= t_heart,
    )
    wall = rng.uniform(6.0, 9.0)
    chamber = Blob.make(n, heart.cx, heart.cy, heart.a - wall, heart.b - wall, heart.theta, heart.present)

    def vessel(fx: float, fy: float, r: tuple[float, float], present: np.ndarray) -> Blob:
        radius = rng.uniform(*r)
        return Blob.make(n, cx + cav_a * fx + drift(2.0), cy + cav_b * fy + drift(2.0), radius, radius, 0.0, present)

    aorta_r = rng.uniform(10.0, 14.0)
    desc = Blob.make(n, cx + cav_a * rng.uniform(0.16, 0.24), cy + cav_b * 0.42 + drift(2.0), aorta_r, aorta_r)
    asc = Blob.make(
        n,
        cx - cav_a * rng.uniform(0.02, 0.08),
        cy - cav_b * 0.22 + drift(2.0),
        aorta_r * 1.15,
        aorta_r * 1.15,
        present=(t > t_arch) & (t < t_heart + 0.15),
    )
    mid_x, mid_y = (asc.cx + desc.cx) / 2, (asc.cy + desc.cy) / 2
    half = np.hypot(desc.cx - asc.cx, desc.cy - asc.cy) / 2
    arch = Blob.make(
        n,
        mid_x,
        mid_y,
        half + aorta_r,
        aorta_r,
        np.arctan2(desc.cy - asc.cy, desc.cx - asc.cx),
        present=np.abs(t - t_arch) <= max(0.04, 0.6 / max(n, 1)),
    )
    pulmonary_trunk = vessel(0.10, -0.24, (11.0, 14.0), (t > t_heart - 0.14) & (t < t_heart + 0.04))
    vena_cava = vessel(-0.20, -0.16, (7.0, 10.0), (t > t_arch - 0.05) & (t < t_heart + 0.05))
    vessels = [desc, asc, arch, pulmonary_trunk, vena_cava]
    for fx in (-0.1, 0.04, 0.16):  # supra-aortic branches
        vessels.append(vessel(fx, -0.12, (4.0, 6.5), t < t_arch))
    trachea_r = rng.uniform(8.0, 11.0)
    airway_wall = max(2.0, 0.5 * grid.pixel_spacing_mm)
    tx, ty = cx + cav_a * rng.uniform(-0.03, 0.03), cy + cav_b * rng.uniform(0.08, 0.16)
    airways = [Blob.make(n, tx, ty, trachea_r, trachea_r * 0.9, present=t < t_carina)]
    along = np.clip((t - t_carina) / 0.2, 0.0, 1.0)
    for side in (-1.0, 1.0):
        spread = cav_a * rng.uniform(0.25, 0.38)
        r = trachea_r * (0.7 - 0.3 * along)
        airways.append(
            Blob.make(n, tx + side * spread * along, ty, r, r, present=(t >= t_carina) & (t < t_carina + 0.2))
        )

    vert_r = rng.uniform(13.0, 18.0)
    vx, vy = cx + drift(1.0), cy + cav_b * rng.uniform(0.6, 0.68)
    vertebra = Blob.make(n, vx, vy, vert_r, vert_r * 0.9)
    canal_r = rng.uniform(6.0, 8.0)
    canal = Blob.make(n, vx, vy + vert_r + canal_r + 1.0, canal_r, canal_r)
    arch_bone = Blob.make(n, canal.cx, canal.cy, canal_r + 4.0, canal_r + 4.0)
    spinous = Blob.make(n, vx, canal.cy + canal_r + 10.0, 3.5, 11.0)

    # Lungs fill the cavity except the mediastinum; smaller at the apex and above the diaphragm, where
    # the chest wall takes the room.
    lung_scale = np.clip(0.6 + 0.4 * t / 0.5, None, 1.0) * (1.0 - 0.15 * np.clip((t - 0.85) / 0.15, 0, 1))
    envelope = Blob.make(n, cx, cy + cav_b * 0.03, cav_a * lung_scale - 2.0, cav_b * (0.85 + 0.15 * lung_scale) - 2.0)
    core = Blob.make(n, cx + cav_a * rng.uniform(0.0, 0.06), cy, cav_a * rng.uniform(0.14, 0.2), cav_b * 1.1)
    keep_out = core.mask(grid) | heart.mask(grid, 3.0) | vertebra.mask(grid, 8.0) | canal.mask(grid, 8.0)
    for blob in [*vessels, *airways[:1]]:
        keep_out |= blob.mask(grid, 3.0)
    inside = cavity.mask(grid)
    lungs = envelope.mask(grid) & inside & ~keep_out
    paint(keep_out & inside, Tissue.MEDIASTINUM, textured(Tissue.MEDIASTINUM, 2.5, 6.0))
    paint(lungs, Tissue.LUNG, textured(Tissue.LUNG, 12.0, 3.0))

    # Pulmonary vessels: branching tubes from each hilum, drawn only inside the lungs.
    weight = np.zeros(grid.shape, dtype=np.float32)
    depth = grid.depth_mm[-1] if n > 1 else grid.slice_thickness_mm
    for side in (-1.0, 1.0):
        hilum = np.array([cx[n // 2] + side * cav_a[n // 2] * 0.22, cy[n // 2], depth * rng.uniform(0.35, 0.55)])
        _branch(rng, grid, hilum, side, radius=rng.uniform(2.5, 3.5), length=rng.uniform(45, 70), depth=3, out=weight)
    lung_vessel_hu = rng.uniform(30.0, 50.0)
    blend = weight * lungs
    hu += blend * (lung_vessel_hu - hu)
    tissue[lungs & (weight >= 0.5)] = Tissue.LUNG_VESSEL

    # Paint order: later structures win where they overlap.
    myocardium = rng.uniform(40.0, 55.0)
    paint(heart.mask(grid), Tissue.HEART_WALL, myocardium)
    paint(chamber.mask(grid), Tissue.CONTRAST, rng.uniform(150.0, 165.0))
    for blob in vessels:
        paint(blob.mask(grid), Tissue.CONTRAST, rng.uniform(150.0, 165.0))
    airway_wall_hu = rng.uniform(20.0, 45.0)
    for blob in airways:
        paint(blob.mask(grid, airway_wall), Tissue.AIRWAY_WALL, airway_wall_hu)
    for blob in airways:
        paint(blob.mask(grid), Tissue.AIRWAY_LUMEN, rng.uniform(-1000.0, -985.0))

    cortical = rng.uniform(*BANDS[Tissue.CORTICAL_BONE])
    cancellous = textured(Tissue.CANCELLOUS_BONE, 40.0, 3.0)
    rim = max(2.0, 0.6 * grid.pixel_spacing_mm)
    for blob in (vertebra, arch_bone, spinous):
        paint(blob.mask(grid), Tissue.CORTICAL_BONE, cortical)
    paint(vertebra.mask(grid, -rim), Tissue.CANCELLOUS_BONE, cancellous)
    paint(canal.mask(grid), Tissue.CSF, rng.uniform(8.0, 20.0))
    _ribs(rng, grid, cx, cy, cav_a + muscle / 2, cav_b + muscle / 2, t, paint, cortical, cancellous)

    chest.contrast_vessels = [desc, asc, pulmonary_trunk, vena_cava]
    return chest


def _branch(
    rng: np.random.Generator,
    grid: Grid,
    start: np.ndarray,
    side: float,
    radius: float,
    length: float,
    depth: int,
    out: np.ndarray,
) -> None:
    """A small random vessel tree: each segment splits into 2-3 thinner, shorter ones, pointing outward."""
    for _ in range(int(rng.integers(2, 4))):
        direction = np.array([side * rng.uniform(0.3, 1.0), rng.uniform(-0.8, 0.8), rng.uniform(-1.0, 1.0)])
        end = start + direction / np.linalg.norm(direction) * length
        tube_weight(grid, start, end, radius, out)
        if depth > 1:
            _branch(rng, grid, end, side, radius * 0.65, length * 0.7, depth - 1, out)


def _ribs(
    rng: np.random.Generator,
    grid: Grid,
    cx: np.ndarray,
    cy: np.ndarray,
    ring_a: np.ndarray,
    ring_b: np.ndarray,
    t: np.ndarray,
    paint: Callable[[np.ndarray, Tissue, float | np.ndarray], None],
    cortical: float,
    cancellous: np.ndarray,
) -> None:
    """Rib cross-sections on the body wall; they come and go along z as oblique ribs do in axial slices."""
    n = grid.n_slices
    depth = grid.depth_mm
    period = rng.uniform(24.0, 34.0)
    angles = np.concatenate([rng.uniform(-1.2, 1.3, 6) + np.pi, rng.uniform(-1.3, 1.2, 6)])
    rim = max(1.5, 0.5 * grid.pixel_spacing_mm)
    for angle in angles:
        theta = angle + 0.25 * t
        present = np.sin(2 * np.pi * depth / period + rng.uniform(0, 2 * np.pi)) > -0.4
        rib = Blob.make(
            n,
            cx + ring_a * np.cos(theta),
            cy + ring_b * np.sin(theta),
            rng.uniform(5.0, 7.5),
            rng.uniform(3.5, 5.0),
            theta + np.pi / 2,
            present,
        )
        paint(rib.mask(grid), Tissue.CORTICAL_BONE, cortical)
        paint(rib.mask(grid, -rim), Tissue.CANCELLOUS_BONE, cancellous)
    sternum = Blob.make(n, cx, cy - ring_b, rng.uniform(10.0, 14.0), 4.5, present=t < 0.85)
    paint(sternum.mask(grid), Tissue.CORTICAL_BONE, cortical)
    paint(sternum.mask(grid, -rim), Tissue.CANCELLOUS_BONE, cancellous)
