"""Files of a finished DVC experiment, read back from its commit and the DVC cache.

`cssl compare` plots what each experiment's pipeline wrote - per-epoch loss histories (small, git-tracked
in the experiment commit) and the final replay buffer (a cached DVC output) - without checking the
experiment out into the workspace.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cssl_core.layout import buffer_dir
from cssl_core.replay.buffer import ReplayBuffer


class ExperimentFiles:
    """Reads `path` as it was at the commit `rev` of each finished experiment (name -> rev)."""

    def __init__(self, project_dir: Path, revs: dict[str, str]) -> None:
        self.project_dir = project_dir
        self.revs = revs

    def text(self, name: str, path: str) -> str | None:
        """A git-tracked file of the experiment (None when the experiment or the file is missing)."""
        rev = self.revs.get(name)
        if rev is None:
            return None
        shown = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=self.project_dir, capture_output=True, text=True, check=False
        )
        return shown.stdout if shown.returncode == 0 else None

    def buffer(self, name: str, stage: str) -> ReplayBuffer | None:
        """The experiment's data/buffers/<stage>, copied out of the DVC cache (None: no buffer or no rev)."""
        from dvc.api import DVCFileSystem

        from cssl_core.replay.directory import read_buffer

        rev = self.revs.get(name)
        if rev is None:
            return None
        fs = DVCFileSystem(str(self.project_dir), rev=rev)
        with tempfile.TemporaryDirectory(prefix="cssl-buffer-") as tmp:
            target = Path(tmp) / "buffer"
            fs.get(buffer_dir(stage).as_posix(), str(target), recursive=True)
            return read_buffer(target, mmap=False)
