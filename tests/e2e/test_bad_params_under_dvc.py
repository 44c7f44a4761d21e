"""A params.yaml mistake under `dvc repro` (the README's driver) loses no output (new-user finding 2).

DVC deletes a stage's outputs just before running its command, so a typo that only the stage itself would
catch used to delete data/models/s1 and its metrics first. The stage `check` (`cssl check --stamp`) is
upstream of every other stage: each mistake below must stop `dvc repro` there, with `cssl check`'s one line
naming the key, before any other stage runs, and every output must be left byte for byte. Mistakes DVC meets
while reading dvc.yaml itself (a YAML error, an empty file, a stage cycle) stop it before any stage runs.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_params
from tests.tiny_pipeline import run_in_project

pytestmark = pytest.mark.slow
RAN = re.compile(r"Running stage '([^']+)'")
KEPT = ("data/models", "data/buffers", "data/eval", "data/metrics", "data/privacy", "data/windowed", "data/summary")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
        for folder in KEPT
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def _set(params: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


CHECKED = [  # (dotted key, bad value, what cssl check's line must say)
    ("ssl.train.epoch", 30, "ssl.train.epoch: key 'epoch' is not allowed"),
    ("ssl.batch_size", "sixteen", "ssl.batch_size: 'sixteen' is not allowed"),
    ("ssl.val_fraction", 1.5, "ssl.val_fraction: 1.5 is not allowed"),
    ("replay.privacy.mode", "secret", "replay.privacy.mode: 'secret' is not allowed"),
    ("continual.stages.s1.window", "lungg", "continual.stages.s1.window: 'lungg' is not allowed"),
    ("privacy.gate.max_reid_auc", -3, "privacy.gate.max_reid_auc: -3 is not allowed"),
]


def test_a_bad_params_yaml_stops_dvc_repro_at_the_check_and_every_output_stays(tiny_pipeline, tmp_path):
    root = tiny_pipeline.copy(tmp_path / "project")
    before = _digests(root)
    assert any(name.startswith("data/models/s1/") for name in before)
    for dotted, value, expected in CHECKED:
        params = _set(tiny_params(), dotted, value)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        done = run_in_project([sys.executable, "-m", "dvc", "repro"], root)
        assert done.returncode != 0, dotted
        assert RAN.findall(done.stdout) == ["check"], (dotted, done.stdout[-2000:])
        ours = [line for line in done.stderr.splitlines() if line.startswith("error: params.yaml")]
        assert len(ours) == 1 and expected in ours[0] and "Traceback" not in done.stderr, (dotted, done.stderr)
        assert _digests(root) == before, f"{dotted}: dvc repro changed or deleted outputs"

    # what DVC itself must read before any stage runs: it refuses there, and nothing is touched either
    broken = {
        "a YAML error": "ssl: [\n",
        "an empty file": "",
        "a stage cycle": yaml.safe_dump(
            _set(_set(tiny_params(), "continual.stages.s1.prev", "s2"), "continual.stages.s2.prev", "s1"),
            sort_keys=False,
        ),
    }
    for what, text in broken.items():
        (root / "params.yaml").write_text(text)
        done = run_in_project([sys.executable, "-m", "dvc", "repro"], root)
        assert done.returncode != 0 and RAN.findall(done.stdout) == [], (what, done.stdout[-2000:])
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and "Traceback" not in done.stderr, (what, done.stderr)
        assert _digests(root) == before, f"{what}: dvc repro changed or deleted outputs"
        checked = run_in_project([str(Path(sys.executable).parent / "cssl"), "check"], root)
        assert checked.returncode == 2 and checked.stderr.startswith("error: params.yaml"), (what, checked.stderr)

    # fixed again: the check passes and, its stamp unchanged, nothing downstream re-runs
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    fixed = run_in_project([sys.executable, "-m", "dvc", "repro"], root)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]
    assert set(RAN.findall(fixed.stdout)) <= {"check"}, fixed.stdout[-2000:]
    assert _digests(root) == before
