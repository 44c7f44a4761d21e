"""Reading an audit report (data/privacy/<stage>.json) back: the one reader for everyone who decides on one.

audit@<stage> writes the report (tasks/privacy_audit.py); gate@<stage> decides on it (tasks/privacy_gate.py) and
`cssl site push` refuses to let a buffer leave without it (flows/site.py). Each used to read it its own way, with
its own words for a missing or corrupt file. One reader gives one answer: a missing report is a FileNotFoundError
and an unreadable one (not JSON, not an object) a ValueError, each one line naming the file and the stage to
re-run, which the CLI prints as its `error:` line (flows/errors.py) and the site check rewords as its own.

Light on purpose (json and the layout only): the site check and the gate import it without torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cssl_core.layout import privacy_report


def read_audit_report(stage: str, root: Path = Path(".")) -> dict[str, Any]:
    """The audit report of `stage` under the project `root`; messages name the path relative to the root.

    Raises FileNotFoundError when it is absent (`dvc repro audit@<stage>` first) and ValueError when it cannot
    be read, is not JSON or not a JSON object (re-run the audit).
    """
    shown = privacy_report(stage)
    rerun = f"`dvc repro audit@{stage}`"
    try:
        report = json.loads((root / shown).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: missing; run {rerun} first") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{shown}: unreadable ({error}); re-run {rerun}") from None
    if not isinstance(report, dict):
        raise ValueError(f"{shown}: not an audit report; re-run {rerun}")
    return report
