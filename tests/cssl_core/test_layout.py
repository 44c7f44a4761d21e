"""cssl_core/layout.py: the one place that names files under data/, and the one walk of the prev-chain."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cssl_core.config.continual import parse_continual
from cssl_core.layout import (
    INIT,
    StageLoopError,
    metrics_path,
    passed_list,
    quality_report,
    screen_report,
    stage_chain,
    stage_paths,
    windowed_dir,
)
from tests.helpers import REPO_ROOT

THREE = {
    "s1": {"prev": "init", "cohort": "a", "window": "lung"},
    "s2": {"prev": "s1", "cohort": "b", "window": "mediastinal"},
    "s3": {"prev": "s2", "cohort": "a", "window": "mediastinal"},
}


def _params(stages: dict) -> dict:
    return {"continual": {"stages": stages}}


def test_paths_of_a_three_stage_chain():
    first, second, third = (stage_paths(_params(THREE), name) for name in ("s1", "s2", "s3"))
    assert [p.index for p in (first, second, third)] == [0, 1, 2]
    assert (first.prev, second.prev, third.prev) == (INIT, "s1", "s2")
    assert first.prev_model == Path("data/models/init") and first.prev_buffer == Path("data/buffers/init")
    assert third.windowed == Path("data/windowed/a-mediastinal") == windowed_dir("a", "mediastinal")
    assert third.model == Path("data/models/s3") and third.prev_model == Path("data/models/s2")
    assert third.buffer == Path("data/buffers/s3") and third.prev_buffer == Path("data/buffers/s2")
    assert third.checkpoints == Path("data/checkpoints/s3")
    assert third.privacy_report == Path("data/privacy/s3.json")
    assert third.privacy_figure == Path("data/privacy/s3.png")
    assert third.eval_row == Path("data/eval/s3.json")
    assert third.metrics("export") == Path("data/metrics/export-s3.json")
    assert third.metrics("pretrain", "-history.csv") == Path("data/metrics/pretrain-s3-history.csv")


def test_data_stage_paths_and_their_roots():
    assert screen_report("c") == Path("data/quality/c.screen.json")
    assert passed_list("c", Path("q")) == Path("q/c.passed.json")
    assert quality_report("c", "lung") == Path("data/quality/c-lung.json")
    assert windowed_dir("c", "lung", Path("w")) == Path("w/c-lung")
    assert metrics_path("audit", "s1") == Path("data/metrics/audit-s1.json")


def test_the_chain_in_training_order_whatever_the_order_of_the_params():
    shuffled = {name: THREE[name] for name in ("s3", "s1", "s2")}
    assert stage_chain(shuffled, "s3") == ("s1", "s2", "s3")
    assert stage_chain(shuffled, "s1") == ("s1",)
    assert stage_chain(shuffled, INIT) == ()


def test_the_config_and_the_stages_walk_the_same_chain():
    config = parse_continual(_params(THREE)["continual"], ("a", "b"), ("lung", "mediastinal"))
    for name in THREE:
        assert config.chain(name) == stage_chain(THREE, name)
    assert config.order == ("s1", "s2", "s3")


def test_an_unknown_stage_is_named_with_the_known_ones():
    with pytest.raises(KeyError, match=r"no continual stage 's9'.*known: s1, s2, s3"):
        stage_paths(_params(THREE), "s9")
    with pytest.raises(KeyError, match=r"no continual stage 's9'"):
        stage_chain(THREE, "s9")
    with pytest.raises(KeyError, match=r"continual.stages.s1 lacks \['window'\]"):
        stage_paths(_params({"s1": {"prev": "init", "cohort": "a"}}), "s1")


def test_a_prev_that_is_no_stage_is_an_error():
    stages = {**THREE, "s2": {**THREE["s2"], "prev": "s0"}}
    with pytest.raises(ValueError, match=r"continual.stages.s3: prev chain reaches 's0', which is not a stage"):
        stage_paths(_params(stages), "s3")


def test_a_loop_is_an_error_that_names_the_cycle():
    stages = {**THREE, "s1": {**THREE["s1"], "prev": "s3"}}
    with pytest.raises(StageLoopError, match=r"continual.stages.s2: prev chain reaches 's2'") as caught:
        stage_paths(_params(stages), "s2")
    assert caught.value.cycle == ["s2", "s1", "s3", "s2"]
    tail = {**stages, "s4": {"prev": "s3", "cohort": "a", "window": "lung"}}
    with pytest.raises(ValueError) as entered:
        stage_chain(tail, "s4")
    assert entered.value.cycle == ["s3", "s2", "s1", "s3"]  # the loop only, not the stage that runs into it


def test_no_task_or_flow_spells_a_data_path():
    """Every path under data/ is named in cssl_core/layout.py. Prose (docstrings, help texts, messages: strings
    with a space) may mention a path; a string that is one, or Path("data"), is a second spelling of the layout."""
    path_like = re.compile(r"(^|[^\w])data/")
    found = []
    for path in sorted([*REPO_ROOT.glob("tasks/*.py"), *REPO_ROOT.glob("flows/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
            if value is not None and path_like.search(value) and not re.search(r"\s", value):
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {value!r}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Path" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and str(first.value).split("/")[0] == "data":
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: Path({first.value!r})")
    assert not found, found
