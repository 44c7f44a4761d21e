"""`none`: the selected latents as they are (float16). The audit shows they invert back into the slices."""

from __future__ import annotations

from typing import ClassVar

from cssl_core.replay.modes.base import BufferMode


class NoneMode(BufferMode):
    """Stores each selected row's lower(x); replay reads the rows; the attacker needs only the shared model."""

    name: ClassVar[str] = "none"
