"""Rasterising simple shapes onto a (z, y, x) grid in millimetres.

The phantom describes anatomy in mm so that one cohort's 2.6 mm pixels and another's 3.0 mm pixels show
the same body; only this module knows about pixels. Every shape is evaluated inside its own bounding box
because most structures (ribs, vessels, lesions) are a few pixels wide: computing them on the full grid
would cost most of the generation time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates in mm; x to the patient's left (image right), y posterior (image down)."""

    n_slices: int
    matrix: int
    pixel_spacing_mm: float
    slice_thickness_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_slices, self.matrix, self.matrix)

    @property
    def fov_mm(self) -> float:
        return self.matrix * self.pixel_spacing_mm

    @property
    def axis_mm(self) -> np.ndarray:
        """In-plane coordinates of pixel centres, 0 at the image centre."""
        return ((np.arange(self.matrix, dtype=np.float32) - (self.matrix - 1) / 2.0) * self.pixel_spacing_mm).astype(
            np.float32
        )

    @property
    def t(self) -> np.ndarray:
        """Position of each slice from the lung apex (0) to the base (1)."""
        if self.n_slices == 1:
            return np.array([0.5])
        return np.linspace(0.0, 1.0, self.n_slices)

    @property
    def depth_mm(self) -> np.ndarray:
        """Distance of each slice centre below the first (most superior) slice."""
        return np.arange(self.n_slices, dtype=np.float64) * self.slice_thickness_mm

    def col(self, x_mm: float | np.ndarray) -> np.ndarray:
        return np.asarray(x_mm) / self.pixel_spacing_mm + (self.matrix - 1) / 2.0


def per_slice(value: float | np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


@dataclass
class Blob:
    """An ellipse per slice (centre, semi-axes, rotation), present on some slices: tubes along z, organs."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    present: np.ndarray

    @classmethod
    def make(
        cls,
        n: int,
        cx: float | np.ndarray,
        cy: float | np.ndarray,
        a: float | np.ndarray,
        b: float | np.ndarray,
        theta: float | np.ndarray = 0.0,
        present: np.ndarray | None = None,
    ) -> Blob:
        pres = np.ones(n, dtype=bool) if present is None else np.asarray(present, dtype=bool).copy()
        blob = cls(per_slice(cx, n), per_slice(cy, n), per_slice(a, n), per_slice(b, n), per_slice(theta, n), pres)
        blob.present &= (blob.a > 0) & (blob.b > 0)
        return blob

    def mask(self, grid: Grid, grow: float = 0.0) -> np.ndarray:
        """Boolean (z, y, x) mask; `grow` widens both semi-axes by that many mm (a cheap dilation)."""
        out = np.zeros(grid.shape, dtype=bool)
        a = self.a + grow
        b = self.b + grow
        zs = np.flatnonzero(self.present & (a > 0) & (b > 0))
        if zs.size == 0:
            return out
        reach = np.maximum(a[zs], b[zs])
        box = _box(grid, self.cx[zs] - reach, self.cx[zs] + reach, self.cy[zs] - reach, self.cy[zs] + reach)
        if box is None:
            return out
        (r0, r1), (c0, c1) = box
        axis = grid.axis_mm
        xs = axis[None, None, c0:c1].astype(np.float64)
        ys = axis[None, r0:r1, None].astype(np.float64)
        dx = xs - self.cx[zs, None, None]
        dy = ys - self.cy[zs, None, None]
        cos = np.cos(self.theta[zs])[:, None, None]
        sin = np.sin(self.theta[zs])[:, None, None]
        u = dx * cos + dy * sin
        v = -dx * sin + dy * cos
        inside = (u / a[zs, None, None]) ** 2 + (v / b[zs, None, None]) ** 2 <= 1.0
        out[zs, r0:r1, c0:c1] = inside
        return out


def ellipsoid(grid: Grid, centre: tuple[float, float, float], radii: tuple[float, float, float], theta: float) -> Blob:
    """A 3-D ellipsoid (in-plane rotation only) as the ellipse it cuts on each slice plane."""
    cx, cy, cz = centre
    rx, ry, rz = radii
    dz = (grid.depth_mm - cz) / rz
    scale = np.sqrt(np.clip(1.0 - dz**2, 0.0, None))
    return Blob.make(grid.n_slices, cx, cy, rx * scale, ry * scale, theta, present=np.abs(dz) < 1.0)


def tube_weight(grid: Grid, p0: np.ndarray, p1: np.ndarray, radius: float, out: np.ndarray) -> None:
    """Max-accumulate into `out` a partial-volume weight (0..1) of a straight tube from p0 to p1 (x, y, depth).

    The one-pixel ramp at the wall keeps vessels thinner than a pixel visible as dim dots, as on a real
    scanner, instead of vanishing or turning into full-intensity single pixels.
    """
    ramp = grid.pixel_spacing_mm
    reach = radius + ramp
    lo = np.minimum(p0, p1) - reach
    hi = np.maximum(p0, p1) + reach
    box = _box(grid, np.array([lo[0]]), np.array([hi[0]]), np.array([lo[1]]), np.array([hi[1]]))
    z0 = max(int(np.floor(lo[2] / grid.slice_thickness_mm)), 0)
    z1 = min(int(np.ceil(hi[2] / grid.slice_thickness_mm)) + 1, grid.n_slices)
    if box is None or z0 >= z1:
        return
    (r0, r1), (c0, c1) = box
    axis = grid.axis_mm.astype(np.float64)
    px = axis[None, None, c0:c1]
    py = axis[None, r0:r1, None]
    pz = grid.depth_mm[z0:z1, None, None]
    d = p1 - p0
    length2 = float(d @ d) or 1e-9
    s = ((px - p0[0]) * d[0] + (py - p0[1]) * d[1] + (pz - p0[2]) * d[2]) / length2
    s = np.clip(s, 0.0, 1.0)
    dist = np.sqrt((px - p0[0] - s * d[0]) ** 2 + (py - p0[1] - s * d[1]) ** 2 + (pz - p0[2] - s * d[2]) ** 2)
    weight = np.clip((radius - dist) / ramp + 0.5, 0.0, 1.0)
    view = out[z0:z1, r0:r1, c0:c1]
    np.maximum(view, weight.astype(out.dtype), out=view)


def smooth_noise(rng: np.random.Generator, grid: Grid, sigma_mm: float) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed with a Gaussian kernel of sigma_mm (texture, not CT noise)."""
    white = rng.standard_normal(grid.shape, dtype=np.float32)
    spec = np.fft.rfftn(white)
    fz = np.fft.fftfreq(grid.n_slices, d=grid.slice_thickness_mm)[:, None, None]
    fy = np.fft.fftfreq(grid.matrix, d=grid.pixel_spacing_mm)[None, :, None]
    fx = np.fft.rfftfreq(grid.matrix, d=grid.pixel_spacing_mm)[None, None, :]
    spec *= np.exp(-2.0 * (np.pi * sigma_mm) ** 2 * (fz**2 + fy**2 + fx**2)).astype(np.float32)
    smooth = np.fft.irfftn(spec, s=grid.shape).astype(np.float32)
    sd = float(smooth.std())
    return smooth / sd if sd > 0 else smooth


def _box(
    grid: Grid, x_lo: np.ndarray, x_hi: np.ndarray, y_lo: np.ndarray, y_hi: np.ndarray
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    n = grid.matrix
    c0 = max(int(np.floor(grid.col(x_lo.min()))), 0)
    c1 = min(int(np.ceil(grid.col(x_hi.max()))) + 1, n)
    r0 = max(int(np.floor(grid.col(y_lo.min()))), 0)
    r1 = min(int(np.ceil(grid.col(y_hi.max()))) + 1, n)
    if c0 >= c1 or r0 >= r1:
        return None
    return (r0, r1), (c0, c1)
