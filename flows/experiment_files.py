"""Files of a finished DVC experiment, read back from its commit and the DVC cache.

`cssl compare` plots what each experiment's pipeline wrote - per-epoch loss histories (small, git-tracked
in the experiment commit) and the final replay buffer (a cached DVC output) - without checking the
experiment out into the workspace. Both go through one `dvc.api.DVCFileSystem` per experiment commit,
which serves git-tracked files and cached outputs alike, so nothing here calls git.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from cssl_core.layout import buffer_dir
from cssl_core.replay.buffer import ReplayBuffer

if TYPE_CHECKING:
    from dvc.api import DVCFileSystem


class ExperimentFiles:
    """Reads `path` as it was at the commit `rev` of each finished experiment (name -> rev).

    Each commit's file system opens a DVC repo at that commit: it is opened once and kept for every file
    read from it, until `close` (or the end of a `with` block).
    """

    def __init__(self, project_dir: Path, revs: dict[str, str]) -> None:
        self.project_dir = project_dir
        self.revs = revs
        self._filesystems: dict[str, DVCFileSystem] = {}

    def __enter__(self) -> ExperimentFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the DVC repos opened at the experiments' commits."""
        for fs in self._filesystems.values():
            fs.close()
        self._filesystems.clear()

    def _filesystem(self, name: str) -> DVCFileSystem | None:
        rev = self.revs.get(name)
        if rev is None:
            return None
        if rev not in self._filesystems:
            from dvc.api import DVCFileSystem

            self._filesystems[rev] = DVCFileSystem(str(self.project_dir), rev=rev)
        return self._filesystems[rev]

    def text(self, name: str, path: str) -> str | None:
        """A file of the experiment's commit (None when the experiment, its commit or the file is missing).

        Meant for git-tracked files, as `git show <rev>:<path>` read them before; a cached DVC output would be
        served too, from the cache.
        """
        from dvc.scm import RevError

        fs = self._filesystem(name)
        if fs is None:
            return None
        try:
            return fs.read_text(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, RevError):
            return None

    def buffer(self, name: str, stage: str) -> ReplayBuffer | None:
        """The experiment's data/buffers/<stage>, copied out of the DVC cache (None: no buffer or no rev)."""
        from cssl_core.replay.directory import read_buffer

        fs = self._filesystem(name)
        if fs is None:
            return None
        with tempfile.TemporaryDirectory(prefix="cssl-buffer-") as tmp:
            target = Path(tmp) / "buffer"
            fs.get(buffer_dir(stage).as_posix(), str(target), recursive=True)
            return read_buffer(target, mmap=False)
