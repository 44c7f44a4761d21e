"""gate@<stage> (tasks/privacy_gate.py) on an audit report it cannot use: one `error:` line from the CLI, and no
clearance left behind. (Verdicts on real audits: tests/tasks/test_privacy_audit.py, slow.)"""

from __future__ import annotations

import pytest

from cssl_core.config import ProjectConfig
from cssl_core.layout import privacy_clearance, privacy_report
from cssl_core.privacy.clearance import write_clearance
from flows.errors import is_expected, message
from tasks.privacy_gate import run_privacy_gate
from tests.helpers import tiny_params


@pytest.fixture(scope="module")
def config() -> ProjectConfig:
    return ProjectConfig.from_params(tiny_params())


@pytest.mark.parametrize(
    ("content", "error", "line"),
    [
        (None, FileNotFoundError, "data/privacy/s1.json: missing; run `dvc repro audit@s1` first"),
        ("{", ValueError, "data/privacy/s1.json: unreadable ("),
        ("null", ValueError, "data/privacy/s1.json: not an audit report; re-run `dvc repro audit@s1`"),
    ],
    ids=["missing", "corrupt", "not-a-report"],
)
def test_a_missing_or_corrupt_report_is_one_line_and_removes_a_stale_clearance(
    tmp_path, monkeypatch, config, content, error, line
):
    monkeypatch.chdir(tmp_path)
    write_clearance("s1")  # from an earlier run whose audit passed
    if content is not None:
        privacy_report("s1").write_text(content)
    with pytest.raises(error) as caught:
        run_privacy_gate("s1", config)
    assert is_expected(caught.value) and message(caught.value).startswith(line)
    assert "\n" not in message(caught.value)
    assert not privacy_clearance("s1").exists()
