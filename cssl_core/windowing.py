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
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

STORED_DTYPES = ("uint8", "float16")
GREY_LEVELS = 255  # the top uint8 grey level: `quantise` maps 1.0 to it, `to_unit` maps it back to 1.0
Slices = TypeVar("Slices", np.ndarray, "torch.Tensor")


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


def to_unit(slices: Slices, *, reciprocal: bool = False) -> Slices:
    """Stored slices -> float32 in [0, 1]: uint8 grey levels divided by 255, float slices (already in [0, 1])
    cast to float32. A numpy array gives a new numpy array; a torch tensor gives a tensor on its own device
    (uint8 crosses to the device before the cast, at a quarter of the bytes; a float32 tensor comes back as is).

    Every reader of windowed slices and raw buffers goes through here, so that model inputs mean the same
    grey levels wherever they are read. `reciprocal=True` multiplies by float32(1/255) instead of dividing
    by 255: the training dataset and the probe features have always read slices that way, and the product
    differs from the quotient in the last bit for 126 of the 256 grey levels, so those two readers keep it
    until a change that is allowed to move trained numbers makes all readers divide.
    """
    if isinstance(slices, np.ndarray):
        if slices.dtype == np.uint8:
            unit = np.asarray(slices, dtype=np.float32)
            if reciprocal:
                return unit * np.float32(1.0 / GREY_LEVELS)
            return unit / np.float32(GREY_LEVELS)
        if slices.dtype.kind == "f":
            return np.array(slices, dtype=np.float32)  # a copy, never a view of a (read-only) memory map
        raise ValueError(f"stored slices must be uint8 (0..255) or float in [0, 1], got dtype {slices.dtype}")
    import torch  # only reached with a tensor in hand: this module stays importable without torch

    if slices.dtype == torch.uint8:
        unit = slices.float()
        return unit.mul_(1.0 / GREY_LEVELS) if reciprocal else unit.div_(float(GREY_LEVELS))
    if slices.is_floating_point():
        return slices.float()
    raise ValueError(f"stored slices must be uint8 (0..255) or float in [0, 1], got dtype {slices.dtype}")


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
