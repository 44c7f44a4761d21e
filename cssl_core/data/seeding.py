"""Seeds derived from (seed, purpose, epoch, ...) instead of drawn from a running RNG.

A resumed run must draw exactly what the uninterrupted run drew. That holds trivially when every random
stream of epoch e is seeded from (seed, e) alone, and never from how much randomness earlier epochs, other
workers or an evaluation pass happened to consume in this process.
"""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 32-bit seed that is a pure function of `seed` and `parts` (strings are hashed with crc32, which,
    unlike `hash()`, does not change between processes)."""
    words = [int(seed) & 0xFFFFFFFF]
    for part in parts:
        words.append(zlib.crc32(part.encode()) if isinstance(part, str) else int(part) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(1)[0])
