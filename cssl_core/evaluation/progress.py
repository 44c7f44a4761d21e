"""Progress lines for long evaluation loops, in the style of pretrain's epoch lines.

One flushed line per finished step, `<stage> <what> <i>/<n>: <detail>`, so `dvc repro` (which passes a
stage's stdout through) shows how far evaluate and report are without a progress bar mangling its log.
"""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """Counts steps of a known total and prints one line per step."""

    def __init__(self, label: str, what: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.what, self.total, self.done = label, what, max(int(total), 0), 0
        self.stream = stream

    def step(self, detail: str = "") -> None:
        self.done += 1
        line = f"{self.label} {self.what} {self.done}/{self.total}" + (f": {detail}" if detail else "")
        print(line, file=self.stream or sys.stdout, flush=True)
