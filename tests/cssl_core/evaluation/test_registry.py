"""The probe registry: one signature for every probe, the same numbers as calling the probe itself, and names
that params validation (torch-free) and the registry share."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cssl_core.config.errors import ConfigError
from cssl_core.config.evaluation import parse_eval
from cssl_core.evaluation import (
    PROBE_NAMES,
    PROBES,
    REFERENCE_PROBE,
    FinetuneBudget,
    ProbeData,
    attentive_probe,
    finetune_probe,
    get_probe,
    knn_probe,
    linear_probe,
    needed_inputs,
    pooled,
    token_probe,
)
from cssl_core.models import build_mae
from tests.helpers import REPO_ROOT

torch.set_num_threads(1)
BUDGET = FinetuneBudget(steps=3, batch_size=4)


def _data(with_optional: bool = True) -> ProbeData:
    rng = np.random.default_rng(0)
    n, tokens, width = 24, 4, 6
    labels = np.arange(n) % 2 == 0
    x = rng.normal(size=(n, tokens, width)).astype(np.float32)
    x[labels, 0, 0] += 3.0  # the lesion lives in one token
    token_labels = np.zeros((n, tokens), dtype=bool)
    token_labels[labels, 0] = True
    torch.manual_seed(0)
    model = build_mae(
        "tiny", img_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, split_block=1
    )
    images = torch.from_numpy(rng.uniform(size=(n, 1, 16, 16)).astype(np.float32))
    return ProbeData(
        labels=labels,
        tokens=x,
        features=pooled(x),
        token_labels=token_labels if with_optional else None,
        pixels=rng.normal(size=(n, 9)).astype(np.float32) + labels[:, None] if with_optional else None,
        images=images if with_optional else None,
        model=model.eval() if with_optional else None,
        finetune=BUDGET,
    )


TRAIN, TEST = np.arange(0, 16), np.arange(16, 24)


def test_the_registry_holds_the_selectable_probes_in_order_then_the_reference():
    assert tuple(PROBES) == (*PROBE_NAMES, REFERENCE_PROBE)
    assert all(PROBES[name].name == name for name in PROBES)


def test_each_probe_gives_exactly_what_its_function_gives():
    data = _data()
    y = data.labels
    expected = {
        "linear": linear_probe(data.features[TRAIN], y[TRAIN], data.features[TEST], y[TEST], 3),
        "attentive": attentive_probe(data.tokens[TRAIN], y[TRAIN], data.tokens[TEST], y[TEST], 3, epochs=200),
        "token": token_probe(
            data.tokens[TRAIN], data.token_labels[TRAIN], data.tokens[TEST], data.token_labels[TEST], 3
        ),
        "knn": knn_probe(data.features[TRAIN], y[TRAIN], data.features[TEST], y[TEST]),
        "finetune": finetune_probe(
            data.model, data.images[TRAIN], y[TRAIN], data.images[TEST], y[TEST], 3, BUDGET
        ),
        REFERENCE_PROBE: linear_probe(data.pixels[TRAIN], y[TRAIN], data.pixels[TEST], y[TEST], 3),
    }
    for name, probe in PROBES.items():
        assert probe(data, TRAIN, TEST, 3) == expected[name], name
    assert expected["linear"]["auc"] > 0.5 and expected["token"]["auc"] > 0.9  # the data carry the signal


def test_a_task_without_masks_gives_no_token_result_and_missing_pixels_are_an_error():
    data = _data(with_optional=False)
    assert PROBES["token"](data, TRAIN, TEST, 0) is None
    with pytest.raises(ValueError, match="needs ProbeData.pixels"):
        PROBES[REFERENCE_PROBE](data, TRAIN, TEST, 0)
    with pytest.raises(ValueError, match=r"'finetune' probe needs ProbeData.images .* and ProbeData.model"):
        PROBES["finetune"](data, TRAIN, TEST, 0)


def test_needed_inputs_name_only_what_the_chosen_probes_read():
    assert needed_inputs(["linear", "attentive"]) == frozenset()
    assert needed_inputs(["linear", "token"]) == {"token_labels"}
    assert needed_inputs(["knn"]) == frozenset()
    assert needed_inputs(["finetune"]) == {"images", "model"}
    assert needed_inputs([*PROBE_NAMES, REFERENCE_PROBE]) == {"token_labels", "pixels", "images", "model"}
    with pytest.raises(KeyError, match=r"unknown probe 'ridge'; registered: \['attentive', 'finetune', 'knn'"):
        needed_inputs(["linear", "ridge"])
    assert get_probe("attentive") is PROBES["attentive"]


def _eval_block(probes: list[str]) -> dict:
    task = {"cohort": "a", "window": "lung", "label": "has_ggo", "mask_class": 1}
    return {"recon_slices": 4, "seed": 0, "probes": probes, "fractions": [1.0], "folds": 2, "tasks": {"t": task}}


def test_params_validation_accepts_every_registered_probe_and_only_those():
    assert {"knn", "finetune"} <= set(PROBE_NAMES)
    assert parse_eval(_eval_block(list(PROBE_NAMES)), ("a",), ("lung",), {"s1": "lung"}).probes == PROBE_NAMES
    for wrong in (REFERENCE_PROBE, "ridge"):  # the reference probe is run by evaluate@init, never chosen
        with pytest.raises(ConfigError, match=r"eval\.probes\[1\]"):
            parse_eval(_eval_block(["linear", wrong]), ("a",), ("lung",), {"s1": "lung"})


def test_eval_finetune_defaults_when_absent_and_takes_a_partial_block():
    assert parse_eval(_eval_block(["finetune"]), ("a",), ("lung",), {"s1": "lung"}).finetune == FinetuneBudget()
    block = _eval_block(["finetune"]) | {"finetune": {"steps": 5, "head_lr": 0.01}}
    config = parse_eval(block, ("a",), ("lung",), {"s1": "lung"})
    assert config.finetune == FinetuneBudget(steps=5, head_lr=0.01)
    assert config.as_params()["finetune"] == {"steps": 5, "batch_size": 32, "lr": 1.0e-4, "head_lr": 0.01}


@pytest.mark.parametrize(
    "block, key",
    [
        ({"steps": 0}, "eval.finetune.steps"),
        ({"steps": 2.5}, "eval.finetune.steps"),
        ({"batch_size": 1}, "eval.finetune.batch_size"),
        ({"lr": 0}, "eval.finetune.lr"),
        ({"head_lr": "fast"}, "eval.finetune.head_lr"),
        ({"lr": 2.0}, "eval.finetune.lr"),
        ({"epochs": 3}, "eval.finetune.epochs"),
        ([60, 32], "eval.finetune"),
    ],
)
def test_bad_eval_finetune_values_are_refused_in_one_line_naming_the_key(block, key):
    with pytest.raises(ConfigError) as refused:
        parse_eval(_eval_block(["finetune"]) | {"finetune": block}, ("a",), ("lung",), {"s1": "lung"})
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"params.yaml {key}:"), line


def test_the_probe_names_and_their_validation_import_no_torch_or_sklearn():
    code = (
        "import json, sys\n"
        "from cssl_core.evaluation.probe_names import PROBE_NAMES\n"
        "from cssl_core.config.evaluation import parse_eval\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}
    assert not loaded & {"torch", "sklearn", "pandas"}
    assert "cssl_core.evaluation.probes" not in json.loads(out.splitlines()[-1])
