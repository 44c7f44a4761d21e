"""Where a series came from (cssl_core/quality/series_files.py): the files every quality message names."""

from __future__ import annotations

import pandas as pd
import pytest

from cssl_core.quality.series_files import files_summary, read_files_table, series_files


def test_files_summary():
    assert files_summary(["a/b/1.dcm", "a/b/2.dcm"]) == "a/b/ (2 files)"
    assert files_summary(["1.dcm", "2.dcm", "3.dcm", "4.dcm"]) == "1.dcm, 2.dcm, 3.dcm (+1 more)"
    assert files_summary([]) == "no files recorded in files.parquet"


def test_series_files_groups_every_file_of_a_keyed_series_sorted():
    files = pd.DataFrame(
        {"path": ["p1/s0/2.dcm", "p1/s0/1.dcm", "notes.txt", "p2/s0/1.dcm"], "series_key": ["a", "a", None, "b"]}
    )
    assert series_files(files) == {"a": ["p1/s0/1.dcm", "p1/s0/2.dcm"], "b": ["p2/s0/1.dcm"]}


def test_read_files_table_says_which_stage_to_rerun(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the ingest stage"):
        read_files_table(tmp_path / "files.parquet")
    pd.DataFrame({"path": ["x.dcm"]}).to_parquet(tmp_path / "files.parquet")
    with pytest.raises(ValueError, match="lacks column\\(s\\) series_key: re-run the ingest stage"):
        read_files_table(tmp_path / "files.parquet")
