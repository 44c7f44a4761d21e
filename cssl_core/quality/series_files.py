"""Where a series came from: its input files, relative to the cohort folder, from ingest's files.parquet.

Series keys are keyed pseudonyms, which nobody can map back to a folder by eye; every quality message that
names a series also names its files, so the person who has to act knows what to look at or remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

KEY_COLUMN = "series_key"
FILES_SHOWN = 3  # file names a summary spells out when the files do not share one folder


def read_files_table(path: Path) -> pd.DataFrame:
    """files.parquet with the two columns needed here, or an error saying which stage to re-run."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the ingest stage for this cohort first")
    files = pd.read_parquet(path)
    missing = {"path", KEY_COLUMN} - set(files.columns)
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(sorted(missing))}: re-run the ingest stage")
    return files


def series_files(files: pd.DataFrame) -> dict[str, list[str]]:
    """Series key -> its files (every status: removing a series means removing all of them), sorted."""
    known = files[files[KEY_COLUMN].notna()]
    return {str(key): sorted(group["path"].astype(str)) for key, group in known.groupby(KEY_COLUMN, sort=False)}


def files_summary(paths: Sequence[str]) -> str:
    """A folder when all files share one (`p003/s000/ (40 files)`), else the first few names."""
    if not paths:
        return "no files recorded in files.parquet"
    parents = {PurePosixPath(p).parent for p in paths}
    if len(parents) == 1 and (parent := parents.pop()) != PurePosixPath("."):
        return f"{parent}/ ({len(paths)} file{'s' * (len(paths) != 1)})"
    shown = ", ".join(paths[:FILES_SHOWN])
    return shown + (f" (+{len(paths) - FILES_SHOWN} more)" if len(paths) > FILES_SHOWN else "")
