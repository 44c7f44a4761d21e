"""report's summary on in-memory evaluation rows (no disk): R matrices, their averages and transfers with the
sign conventions of cssl_core.evaluation.continual, the pixel reference, and the key order metrics.json keeps."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from cssl_core.config import ProjectConfig
from cssl_core.reporting.tree import as_metric_tree, matrix_from_tree
from tasks.report import summary_from_rows, task_stage_index
from tests.helpers import ATTACKER, tiny_params

NAN = float("nan")
COST = {"steps": 7, "buffer_bytes": 0, "buffer_kind": "none", "keeps_raw_images": False}


@functools.cache
def _config(probes: tuple[str, ...] = ("linear", "token")) -> ProjectConfig:
    """The tiny project's two stages; tc's cohort (the audit's attacker) is one no stage trains."""
    params = tiny_params()
    tasks = {"ta": ("phantom_a", "mediastinal"), "tb": ("phantom_b", "lung"), "tc": (ATTACKER, "lung")}
    params["eval"].update(
        probes=list(probes),
        fractions=[0.5, 1.0],
        tasks={
            name: {"cohort": cohort, "window": window, "label": "has_lesion", "mask_class": 1}
            for name, (cohort, window) in tasks.items()
        },
    )
    params["ssl"]["strategy"] = "er"
    params["continual"]["stages"] = {
        "s1": {"prev": "init", "cohort": "phantom_a", "window": "mediastinal"},
        "s2": {"prev": "s1", "cohort": "phantom_b", "window": "lung"},
    }
    return ProjectConfig.from_params(params)


def _auc(values: dict[str, float], fraction: str = "1.0") -> dict[str, dict[str, dict[str, float]]]:
    return {task: {fraction: {"auc": value, "accuracy": 0.5, "f1": 0.5}} for task, value in values.items()}


def _rows() -> dict[str, dict]:
    """Linear AUCs only at fraction 1.0 (0.5 never ran) and no token results (no masks anywhere)."""
    return {
        "init": {
            "recon": {},
            "recon_own": {},
            "cka": {},
            "probes": {
                "linear": _auc({"ta": 0.5, "tb": 0.6, "tc": 0.55}),
                "token": {"ta": {}, "tb": {}, "tc": {}},
                "pixels": _auc({"ta": 0.7, "tb": 0.65}),
            },
        },
        "s1": {
            "recon": {"s1": 1.0},
            "recon_own": {"s1": 1.0},
            "cka": {"s1": 1.0},
            "probes": {"linear": _auc({"ta": 0.9, "tb": 0.7, "tc": 0.6}), "token": {}},
        },
        "s2": {
            "recon": {"s1": 1.5, "s2": 0.5},
            "recon_own": {"s1": 4.0, "s2": 0.5},
            "cka": {"s1": 0.75, "s2": 1.0},
            "probes": {"linear": _auc({"ta": 0.8, "tb": 0.95, "tc": 0.65}), "token": {}},
        },
    }


def _summary() -> dict:
    return summary_from_rows(_config(), ["s1", "s2"], _rows(), COST)


def test_keys_come_in_the_order_metrics_json_is_written_in():
    summary = _summary()
    expected = ["stages", "tasks", "strategy", "task_stage", "recon", "recon_own", "cka", "cost", "linear@1.0"]
    expected.append("pixels@1.0")
    assert list(summary) == expected
    assert summary["stages"] == ["s1", "s2"] and summary["tasks"] == ["ta", "tb", "tc"] and summary["cost"] == COST
    # the owner stage of each task survives the metric tree (a dict of ints: `dvc exp show` keeps it)
    assert as_metric_tree(summary)["task_stage"] == {"ta": 0, "tb": 1, "tc": -1}


def test_label_free_families_over_stages():
    summary = _summary()
    np.testing.assert_array_equal(summary["recon"]["R"], [[1.0, NAN], [1.5, 0.5]])
    assert summary["recon"]["average_final"] == pytest.approx(1.0)
    # a loss: BWT +0.5 on s1's slices is forgetting, and forgetting keeps that sign
    assert summary["recon"]["bwt"] == pytest.approx(0.5) and summary["recon"]["forgetting"] == pytest.approx(0.5)
    # through the model's own decoder: the same loss family, its own matrix (s1's slices 1.0 -> 4.0: BWT +3)
    np.testing.assert_array_equal(summary["recon_own"]["R"], [[1.0, NAN], [4.0, 0.5]])
    assert summary["recon_own"]["bwt"] == pytest.approx(3.0) and summary["recon_own"]["forgetting"] == pytest.approx(3)
    # a similarity: a CKA drop of 0.25 is BWT -0.25 and forgetting +0.25
    assert summary["cka"]["average_final"] == pytest.approx(0.875)
    assert summary["cka"]["bwt"] == pytest.approx(-0.25) and summary["cka"]["forgetting"] == pytest.approx(0.25)


def test_probe_matrix_against_the_random_encoder():
    block = _summary()["linear@1.0"]
    np.testing.assert_allclose(block["R"], [[0.9, 0.7, 0.6], [0.8, 0.95, 0.65]])
    np.testing.assert_allclose(block["random_encoder"], [0.5, 0.6, 0.55])
    assert block["average_final"] == pytest.approx(0.8)  # every task, tc (never trained) included
    assert block["bwt"] == pytest.approx(-0.1) and block["forgetting"] == pytest.approx(0.1)  # ta only: 0.8 - 0.9
    assert block["fwt"] == pytest.approx(0.1)  # tb after s1, before its own stage: 0.7 - 0.6


def test_the_pixel_reference_is_one_value_per_task_and_empty_families_are_left_out():
    summary = _summary()
    per_task = summary["pixels@1.0"]["per_task"]
    assert per_task["ta"] == 0.7 and per_task["tb"] == 0.65 and math.isnan(per_task["tc"])
    assert not any(key.startswith("token@") or key.endswith("@0.5") for key in summary)


def test_the_metric_tree_gives_the_matrices_back():
    summary = _summary()
    tree = as_metric_tree(summary)
    np.testing.assert_allclose(matrix_from_tree(tree, "linear@1.0"), summary["linear@1.0"]["R"])
    assert tree["recon"]["R"]["s1"] == {"s1": 1.0, "s2": None} and tree["pixels@1.0"]["per_task"]["tc"] is None


def test_the_knn_and_finetune_probes_get_their_own_r_matrices_by_name():
    """report builds `<probe>@<fraction>` from eval.probes: a newly registered probe needs no report change."""
    rows = {
        stage: {**row, "probes": {"knn": row["probes"]["linear"], "finetune": row["probes"]["linear"]}}
        for stage, row in _rows().items()
    }
    summary = summary_from_rows(_config(("knn", "finetune")), ["s1", "s2"], rows, COST)
    assert {"knn@1.0", "finetune@1.0"} <= set(summary) and "linear@1.0" not in summary
    for key in ("knn@1.0", "finetune@1.0"):
        np.testing.assert_allclose(summary[key]["R"], [[0.9, 0.7, 0.6], [0.8, 0.95, 0.65]])
        assert summary[key]["fwt"] == pytest.approx(0.1)


def test_a_task_on_held_out_patients_belongs_to_the_stage_it_names():
    """tc's cohort is trained by no stage: by cohort and window it is nobody's, named `stage: s2` it is s2's."""
    assert task_stage_index(_config(), ["s1", "s2"]) == {"ta": 0, "tb": 1, "tc": -1}
    params = tiny_params()
    params["eval"]["tasks"] = {
        "tc": {"cohort": ATTACKER, "window": "lung", "label": "has_lesion", "mask_class": 1, "stage": "s2"}
    }
    params["continual"]["stages"] = {
        "s1": {"prev": "init", "cohort": "phantom_a", "window": "mediastinal"},
        "s2": {"prev": "s1", "cohort": "phantom_b", "window": "lung"},
    }
    assert task_stage_index(ProjectConfig.from_params(params), ["s1", "s2"]) == {"tc": 1}
