import shutil
import subprocess

import yaml

from flows.dag import stage_order
from tests.helpers import REPO_ROOT


def test_order_comes_from_dvc_and_respects_dependencies():
    order = stage_order(REPO_ROOT)
    names = [node.name for node in order]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    cohorts, windows = params["ingest"]["cohorts"], params["window"]["apply"]
    n_continual = len(params["continual"]["stages"])
    # check; demo-data per demo cohort; ingest, screen per cohort; window, quality per cohort x window; init,
    # eval-inputs, evaluate-init, report; pretrain, export, audit, gate, evaluate per continual stage
    per_cohort = 2 * len(cohorts) + 2 * len(cohorts) * len(windows)
    expected = 1 + len(params["data"]["demo"]) + per_cohort + 4 + 5 * n_continual
    assert len(names) == expected
    position = {name: i for i, name in enumerate(names)}
    for node in order:
        for upstream in node.upstream:
            assert position[upstream] < position[node.name]
    assert ("ingest@nsclc", "screen@nsclc") == next(n for n in order if n.name == "window@nsclc-lung").upstream
    assert ("ingest@nsclc",) == next(n for n in order if n.name == "screen@nsclc").upstream
    assert names[0] == "check"  # nothing runs before params.yaml is checked
    for stage, block in params["continual"]["stages"].items():  # a buffer's gate comes before anything that uses it
        if block["prev"] != "init":
            assert position[f"gate@{block['prev']}"] < position[f"pretrain@{stage}"]
        assert position[f"export@{stage}"] < position[f"audit@{stage}"] < position[f"gate@{stage}"]
        assert position[f"gate@{stage}"] < position[f"evaluate@{stage}"]


def test_adding_a_cohort_in_params_adds_its_stages(tmp_path):
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"]["demo"]["phantom_c"] = dict(params["data"]["demo"]["phantom_a"], seed=99)
    params["ingest"]["cohorts"].append("phantom_c")
    params["quality"]["cohorts"]["phantom_c"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    names = {node.name for node in stage_order(tmp_path)}
    added = {"demo-data@phantom_c", "ingest@phantom_c", "screen@phantom_c", "window@phantom_c-lung",
             "quality@phantom_c-mediastinal"}
    assert added <= names
