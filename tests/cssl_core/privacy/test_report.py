"""The one reader of an audit report (cssl_core/privacy/report.py), which the gate and `cssl site push` share:
a missing file and an unreadable one are each one line naming the file and the stage to re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cssl_core.privacy.report import read_audit_report


def _write(root: Path, content: str | bytes) -> None:
    path = root / "data/privacy/s1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def test_a_report_is_read_under_the_root_or_the_working_directory(tmp_path, monkeypatch):
    _write(tmp_path, json.dumps({"buffer": "s1", "figures": {"ssim_p95": 0.4}}))
    assert read_audit_report("s1", tmp_path)["figures"] == {"ssim_p95": 0.4}
    monkeypatch.chdir(tmp_path)
    assert read_audit_report("s1")["buffer"] == "s1"


def test_a_missing_report_names_the_audit_to_run(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        read_audit_report("s1", tmp_path)
    assert str(caught.value) == "data/privacy/s1.json: missing; run `dvc repro audit@s1` first"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{", r"^data/privacy/s1.json: unreadable \(.+\); re-run `dvc repro audit@s1`$"),
        ("[1, 2]", r"^data/privacy/s1.json: not an audit report; re-run `dvc repro audit@s1`$"),
        (b"\xff\xfe{", r"^data/privacy/s1.json: unreadable"),
    ],
    ids=["corrupt", "not-an-object", "not-utf8"],
)
def test_an_unreadable_report_is_one_value_error_line(tmp_path, content, match):
    _write(tmp_path, content)
    with pytest.raises(ValueError, match=match) as caught:
        read_audit_report("s1", tmp_path)
    assert "\n" not in str(caught.value)
