"""CT display windows as transforms.

A window (width W, level L) maps HU affinely onto [0, 1] and clips everything outside [L - W/2, L + W/2].
Because the map is affine, a window destroys information only by that clipping and by the 8-bit
quantisation a viewer applies; both are kept here on purpose, since they are what makes each window a
separate domain for the model. The float path equals MONAI's `ScaleIntensityRange(a_min=L-W/2,
a_max=L+W/2, b_min=0, b_max=1, clip=True)` (tested); it is re-implemented in numpy so the window stage
does not pay for a torch round trip per slice.

Array/dict pair as in MONAI: `ApplyWindow` works on an array, `ApplyWindowd` on keys of a dict.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

STORED_DTYPES = ("uint8", "float16")


@dataclass(frozen=True)
class Window:
    name: str
    width: float
    level: float

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"window {self.name!r}: width must be > 0, got {self.width}")

    @property
    def low(self) -> float:
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        return self.level + self.width / 2.0

    @classmethod
    def from_preset(cls, name: str, presets: Mapping[str, Mapping[str, float]]) -> Window:
        if name not in presets:
            known = ", ".join(sorted(presets))
            raise KeyError(f"unknown window preset {name!r}; known presets: {known} (add it under window.presets)")
        preset = presets[name]
        return cls(name=name, width=float(preset["width"]), level=float(preset["level"]))


def window_unit(hu: np.ndarray, window: Window) -> np.ndarray:
    """HU -> float32 in [0, 1], clipped at the window bounds."""
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(window.low)) / np.float32(window.width)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def quantise(unit: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """[0, 1] floats -> stored training values: 256 grey levels (uint8) or float16 in [0, 1]."""
    if dtype == "uint8":
        return np.floor(np.asarray(unit, dtype=np.float32) * 255.0 + 0.5).astype(np.uint8)
    if dtype == "float16":
        return np.asarray(unit, dtype=np.float16)
    raise ValueError(f"stored dtype must be one of {STORED_DTYPES}, got {dtype!r}")


def stored_range(dtype: str) -> tuple[float, float]:
    """The value range a stored slice of `dtype` may hold."""
    if dtype == "uint8":
        return 0.0, 255.0
    if dtype == "float16":
        return 0.0, 1.0
    raise ValueError(f"stored dtype must be one of {STORED_DTYPES}, got {dtype!r}")


class ApplyWindow:
    """Array transform: HU -> windowed values (quantised when `dtype` is given)."""

    def __init__(self, window: Window, dtype: str | None = "uint8") -> None:
        self.window = window
        self.dtype = dtype

    def __call__(self, hu: np.ndarray) -> np.ndarray:
        unit = window_unit(hu, self.window)
        return unit if self.dtype is None else quantise(unit, self.dtype)


class ApplyWindowd:
    """Dict transform: applies `ApplyWindow` to each of `keys`, leaving other entries untouched."""

    def __init__(self, keys: Sequence[Hashable], window: Window, dtype: str | None = "uint8") -> None:
        self.keys = tuple(keys)
        self.transform = ApplyWindow(window, dtype)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.keys:
            out[key] = self.transform(out[key])
        return out
