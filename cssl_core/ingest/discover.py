"""Find every file under the cohort folder and settle the ones whose fate is clear from the path alone.

Every file found becomes exactly one row of files.parquet, so the walk includes hidden files and the
annotation side-car instead of skipping them: an accounting that silently omits files cannot be audited.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from cssl_core.ingest.annotations import is_annotation_path
from cssl_core.ingest.messages import message
from cssl_core.ingest.reasons import FileStatus, Reason
from cssl_core.ingest.records import FileOutcome


def walk(input_dir: Path) -> list[str]:
    """POSIX paths (relative to input_dir) of all files below it, sorted so that runs are reproducible."""
    root = os.fspath(input_dir)
    found = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        base = os.path.relpath(dirpath, root)
        prefix = "" if base == os.curdir else base.replace(os.sep, "/") + "/"
        found.extend(prefix + name for name in filenames)
    return sorted(found)


def classify_path(rel: str) -> FileOutcome | None:
    """The outcome for files ignored by name (annotation side-car, hidden, DICOMDIR); None otherwise."""
    parts = PurePosixPath(rel).parts
    if is_annotation_path(rel):
        return FileOutcome(rel, FileStatus.IGNORED, Reason.ANNOTATION, message(Reason.ANNOTATION))
    if any(part.startswith(".") for part in parts):
        return FileOutcome(rel, FileStatus.IGNORED, Reason.HIDDEN_FILE, message(Reason.HIDDEN_FILE))
    if parts[-1].upper() == "DICOMDIR":
        return FileOutcome(rel, FileStatus.IGNORED, Reason.DICOMDIR, message(Reason.DICOMDIR))
    return None
