"""The privacy boundary (docs/design.md), read from dvc.yaml through DVC's own API: a continual stage of a strategy
that keeps no raw images sees earlier stages only through their models and replay buffers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cssl_core.strategies import STRATEGIES
from tests.helpers import REPO_ROOT

PRIVATE = sorted(name for name, cls in STRATEGIES.items() if not cls.keeps_raw_images)
THREE_STAGES = {
    "s1": {"prev": "init", "cohort": "phantom_a", "window": "mediastinal"},
    "s2": {"prev": "s1", "cohort": "phantom_b", "window": "lung"},
    "s3": {"prev": "s2", "cohort": "nsclc", "window": "lung"},
}


def _project(tmp_path: Path, strategy: str, stages: dict | None) -> Path:
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["ssl"]["strategy"] = strategy
    if stages:
        params["continual"]["stages"] = stages
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _deps_by_stage(root: Path) -> dict[str, list[str]]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {stage.name: [str(Path(dep.def_path)) for dep in stage.deps] for stage in repo.index.stages}


def test_some_strategy_is_private_and_some_is_not():
    assert "latent_replay" in PRIVATE
    assert any(cls.keeps_raw_images for cls in STRATEGIES.values())


@pytest.mark.parametrize("stages", [None, THREE_STAGES], ids=["default", "three-stages"])
@pytest.mark.parametrize("strategy", PRIVATE)
def test_private_stage_never_depends_on_earlier_cohorts_data(tmp_path, strategy, stages):
    root = _project(tmp_path, strategy, stages)
    params = yaml.safe_load((root / "params.yaml").read_text())
    schedule = params["continual"]["stages"]
    deps = _deps_by_stage(root)
    checked = 0
    for name, block in schedule.items():
        earlier, prev = [], block["prev"]
        while prev != "init":
            earlier.append(schedule[prev])
            prev = schedule[prev]["prev"]
        assert earlier or block["prev"] == "init"
        own_cohort, own_windowed = block["cohort"], f"data/windowed/{block['cohort']}-{block['window']}"
        forbidden = {f"data/windowed/{e['cohort']}-{e['window']}" for e in earlier} - {own_windowed}
        forbidden |= {f"data/{kind}/{e['cohort']}" for e in earlier for kind in ("raw", "interim")
                      if e["cohort"] != own_cohort}
        for kind in ("pretrain", "export"):
            stage_deps = deps[f"{kind}@{name}"]
            data_deps = [d for d in stage_deps if d.startswith("data/")]
            assert data_deps, f"{kind}@{name} has no data deps"
            for dep in data_deps:
                assert not any(dep == f or dep.startswith(f + "/") for f in forbidden), (kind, name, dep)
                allowed = (own_windowed, "data/quality/", "data/models/", "data/buffers/", "data/privacy/")
                assert dep.startswith(allowed), f"{kind}@{name} depends on {dep}"
            checked += 1
    assert checked == 2 * len(schedule)


@pytest.mark.parametrize("stages", [None, THREE_STAGES], ids=["default", "three-stages"])
def test_the_audit_attacks_with_buffer_model_and_attacker_cohort_and_scores_with_the_victims(tmp_path, stages):
    """audit@<k> reads the buffer, the stage's model and the attacker cohort; the victims' windowed slices are
    its one further data dep, read only by the scoring side (cssl_core/privacy/victims.py)."""
    root = _project(tmp_path, "latent_replay", stages)
    params = yaml.safe_load((root / "params.yaml").read_text())
    attacker = params["privacy"]["attacker_cohort"]
    deps = _deps_by_stage(root)
    for name, block in params["continual"]["stages"].items():
        data_deps = {d for d in deps[f"audit@{name}"] if d.startswith("data/")}
        victims = f"data/windowed/{block['cohort']}-{block['window']}"
        attacker_side = {f"data/buffers/{name}", f"data/models/{name}", f"data/windowed/{attacker}-{block['window']}"}
        assert data_deps == attacker_side | {victims}, name
        # the next stage and the evaluation wait on this buffer's gate, which decides on the audit's figures
        assert f"data/privacy/{name}.json" in deps[f"gate@{name}"]
        assert f"data/privacy/{name}.cleared.json" in deps[f"evaluate@{name}"]
        for later, other in params["continual"]["stages"].items():
            if other["prev"] == name:
                assert f"data/privacy/{name}.cleared.json" in deps[f"pretrain@{later}"]
    audit_code = (REPO_ROOT / "tasks/privacy_audit.py").read_text()
    scoring_code = (REPO_ROOT / "cssl_core/privacy/victims.py").read_text()
    assert 'np.load(paths.windowed / "slices.npy"' in scoring_code
    # the attack side never names the victims' directory, nor the export code that reads it (to rebuild each row's
    # source): both are reached through scoring only
    assert "paths.windowed" not in audit_code and "build_stage_rows" not in audit_code
    assert "scoring.victims(" in audit_code and "build_stage_rows(stage, config)" in scoring_code
