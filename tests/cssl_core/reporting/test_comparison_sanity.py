"""The sanity block of reports/compare.md on hand-made metric trees: pretrained vs random, finetune's
forgetting, the strategy spread against the seed sd, the plasticity / stability table and scatter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cssl_core.reporting.comparison import write_report
from cssl_core.reporting.comparison_sanity import (
    NO_FLAGS,
    finetune_forgetting,
    flags,
    informative_cells,
    pretraining_table,
    scatter_points,
    spread,
    spread_table,
    stability_plasticity_plot,
)
from cssl_core.reporting.tree import as_metric_tree

STAGES, TASKS = ["s1", "s2"], ["ggo", "tumour"]  # ggo is s1's task, tumour s2's
RANDOM = {"ggo": 0.6, "tumour": 0.5}


def _tree(
    seed: int,
    linear_final: tuple[float, float] = (0.7, 0.8),
    recon_s1_after_s2: float = 0.6,
    recon_s2: float = 0.4,
    val_mae: float = 0.3,
    with_recon: bool = True,
    own_s1_after_s2: float | None = None,
) -> dict:
    """One finished run. After s1 the linear probe equals the random encoder on ggo (pretraining useless there)
    and beats it by ~0.3 on tumour; the knn@1.0 family (a probe added later) beats it on both."""
    jitter = 0.01 * seed
    after_s1 = [RANDOM["ggo"], RANDOM["tumour"] + 0.3 + jitter]
    summary = {
        "stages": STAGES,
        "tasks": TASKS,
        "strategy": "x",
        "task_stage": {"ggo": 0, "tumour": 1},
        "cka": {"R": np.eye(2), "bwt": -0.1},
        "linear@1.0": {
            "R": np.array([after_s1, list(linear_final)]),
            "random_encoder": [RANDOM["ggo"], RANDOM["tumour"]],
            "average_final": float(np.mean(linear_final)),
            "bwt": linear_final[0] - after_s1[0],
            "fwt": 0.1,
        },
        "knn@1.0": {
            "R": np.array([[0.9 + jitter, 0.9 + jitter], [0.85, 0.88]]),
            "random_encoder": [0.5, 0.5],
            "average_final": 0.865,
            "bwt": -0.05,
        },
        "cost": {"train_seconds": 10.0, "steps": 42, "buffer_bytes": 0, "keeps_raw_images": False},
    }
    if with_recon:
        summary["recon"] = {
            "R": np.array([[0.5, np.nan], [recon_s1_after_s2, recon_s2]]),
            "average_final": (recon_s1_after_s2 + recon_s2) / 2,
            "bwt": recon_s1_after_s2 - 0.5,
        }
    if own_s1_after_s2 is not None:  # the model's own decoder (written since recon_own exists)
        summary["recon_own"] = {
            "R": np.array([[0.5, np.nan], [own_s1_after_s2, recon_s2]]),
            "average_final": (own_s1_after_s2 + recon_s2) / 2,
            "bwt": own_s1_after_s2 - 0.5,
        }
    tree = as_metric_tree(summary)
    tree["pretrain"] = {"s1": {"val_mae": 0.2}, "s2": {"val_mae": val_mae}}
    return tree


def _variants() -> dict:
    return {
        # forgets s1: recon 0.5 -> 0.6 / 0.55 (+20 %, +10 %), linear ggo 0.6 -> 0.45 / 0.40
        "finetune": [
            (0, _tree(0, (0.45, 0.8), 0.6, 0.40, 0.30)),
            (1, _tree(1, (0.40, 0.82), 0.55, 0.42, 0.32)),
        ],
        "latent_replay": [
            (0, _tree(0, (0.58, 0.78), 0.51, 0.45, 0.35)),
            (1, _tree(1, (0.60, 0.79), 0.52, 0.47, 0.37)),
            (2, None),  # failed
        ],
    }


def _rows(lines: list[str], key_cells: int = 1) -> dict[str, list[str]]:
    """A markdown table's rows (header left out; the |---| line never starts with "| ") by their first cells."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return {" ".join(row[:key_cells]): row for row in cells[1:]}


def test_a_column_where_pretraining_equals_random_is_flagged_and_one_that_beats_it_is_not():
    cells = informative_cells(_variants(), TASKS, STAGES)
    assert cells == {
        ("linear@1.0", "ggo"): False,  # after s1 == random in every seed: difference 0 ± 0
        ("linear@1.0", "tumour"): True,  # +0.305 ± 0.007 > 2 sd
        ("knn@1.0", "ggo"): True,  # a probe the report never names is checked the same way
        ("knn@1.0", "tumour"): True,
    }
    one_seed = {v: seeds[:1] for v, seeds in _variants().items()}
    assert set(informative_cells(one_seed, TASKS, STAGES).values()) == {None}  # cannot tell: not flagged


def test_the_raw_pixel_probe_stands_beside_the_random_encoder_without_changing_a_verdict():
    variants = _variants()
    for seeds in variants.values():
        for _, tree in seeds:
            if tree:
                tree["pixels@1.0"] = {"per_task": {"ggo": 0.5, "tumour": 0.9}}
    rows = _rows(pretraining_table(variants, TASKS, STAGES), key_cells=2)
    # after s1: ggo 0.6 in both seeds (+0.1 over pixels); tumour 0.80 / 0.81 (-0.10 / -0.09 under them)
    assert rows["linear@1.0 ggo"][-2:] == ["0.500 ± 0.000", "+0.100 ± 0.000 (n=2)"]
    assert rows["linear@1.0 tumour"][-2:] == ["0.900 ± 0.000", "-0.095 ± 0.007 (n=2)"]
    assert rows["linear@1.0 tumour"][5] == "yes" and rows["linear@1.0 ggo"][5] == "**no**"  # as without pixels
    assert rows["knn@1.0 ggo"][-1] == "+0.405 ± 0.007 (n=2)"  # every family reads the pixels at its own fraction
    older = _rows(pretraining_table(_variants(), TASKS, STAGES), key_cells=2)  # trees without the pixel probe
    assert older["linear@1.0 ggo"][-2:] == ["n/a", "n/a"] and older["linear@1.0 ggo"][5] == "**no**"


def test_finetune_forgetting_numbers():
    variants = _variants()
    lines = finetune_forgetting(variants, TASKS, STAGES, informative_cells(variants, TASKS, STAGES))
    rows = {row[0].split(" ")[0] + " " + row[0].split(" ")[1]: row for row in _rows(lines).values()}
    recon = rows["recon loss"]
    # 0.5 -> 0.6 and 0.55: +20 % and +10 %, mean 15 ± 7.07 > 2 sd = 14.14: forgets
    assert recon[1:] == ["0.5000 ± 0.0000", "0.5750 ± 0.0354", "+15.0 ± 7.1 % (n=2)", "yes"]
    linear = rows["linear@1.0 AUC"]
    # ggo (s1's task) 0.6 -> 0.45 / 0.40: -0.15 and -0.20, mean -0.175 ± 0.035; ggo is uninformative: marked
    assert linear[0] == "linear@1.0 AUC on s1's tasks (ggo)"
    assert linear[1:] == ["~0.600 ± 0.000", "~0.425 ± 0.035", "~-0.175 ± 0.035 (n=2)", "yes"]
    knn = rows["knn@1.0 AUC"]  # 0.90 / 0.91 -> 0.85: -0.05 / -0.06, mean -0.055 ± 0.007 > 2 sd
    assert knn[1:] == ["0.905 ± 0.007", "0.850 ± 0.000", "-0.055 ± 0.007 (n=2)", "yes"]
    assert finetune_forgetting({"er": variants["latent_replay"]}, TASKS, STAGES, {})[0].startswith(
        "No finished `finetune` run"
    )


def test_own_decoder_forgetting_is_a_row_and_a_column_once_the_runs_carry_it():
    """recon_own (each model's own decoder) beside recon (the first stage's decoder): the whole model can forget
    what the encoder keeps. Trees written before recon_own existed get neither the row nor the columns."""
    variants = {
        # own decoder: 0.5 -> 3.0 / 2.5 (+500 %, +400 %); through s1's decoder 0.5 -> 0.6 / 0.55
        "finetune": [(0, _tree(0, own_s1_after_s2=3.0)), (1, _tree(1, recon_s1_after_s2=0.55, own_s1_after_s2=2.5))],
        "joint": [(0, _tree(0, own_s1_after_s2=0.52)), (1, _tree(1, own_s1_after_s2=0.5))],
    }
    cells = informative_cells(variants, TASKS, STAGES)
    rows = _rows(finetune_forgetting(variants, TASKS, STAGES, cells))
    own = rows["recon loss on s1's held-out slices, the model's own decoder"]
    # +500 and +400: mean 450 ± 70.7 > 2 sd
    assert own[1:] == ["0.5000 ± 0.0000", "2.7500 ± 0.3536", "+450.0 ± 70.7 % (n=2)", "yes"]
    assert rows["recon loss on s1's held-out slices, s1's decoder (lower = better)"][3] == "+15.0 ± 7.1 % (n=2)"
    spreads = _rows(spread_table(variants, TASKS, STAGES, flags(variants, TASKS, STAGES))[0])
    # bwt: finetune 2.5 / 2.0, joint 0.02 / 0.0: means 2.25, 0.01 -> sd 1.584; pooled sqrt((0.125 + 0.0002) / 2)
    assert spreads["recon forgetting, own decoder"][1:] == ["1.5839", "2.2400", "0.2502", "6.33", "yes"]
    assert spreads["s1 recon after s2, own decoder"][1] == "1.5839"
    old = _variants()
    assert not any("own decoder" in key for key in _rows(finetune_forgetting(old, TASKS, STAGES, {})))
    assert not any("own decoder" in key for key in _rows(spread_table(old, TASKS, STAGES, NO_FLAGS)[0]))


def test_finetune_forgetting_shows_each_task_of_the_first_stage_and_each_seed():
    """Both tasks owned by s1: the average row, then one row per task (a drop on one finding can hide in the
    average), and a line with every seed's recon change (one seed can carry a mean)."""
    variants = {"finetune": [(seed, tree) for seed, tree in _variants()["finetune"]]}
    for _, tree in variants["finetune"]:
        tree["task_stage"] = {"ggo": 0, "tumour": 0}
    lines = finetune_forgetting(variants, TASKS, STAGES, informative_cells(variants, TASKS, STAGES))
    rows = _rows(lines)
    assert "linear@1.0 AUC on s1's tasks (ggo, tumour)" in rows
    # tumour after s1: 0.8 (seed 0) and 0.81 (seed 1); after s2: 0.8 and 0.82 -> 0.0 and +0.01
    assert rows["linear@1.0 AUC on tumour"][1:] == ["0.805 ± 0.007", "0.810 ± 0.014", "+0.005 ± 0.007 (n=2)", "**no**"]
    assert rows["linear@1.0 AUC on ggo"][3:] == ["~-0.175 ± 0.035 (n=2)", "yes"]
    assert lines[-1] == "The recon change (s1's decoder) of each seed: seed 0 +20.0 %, seed 1 +10.0 %."


def test_spread_between_strategies_against_the_pooled_seed_sd():
    s = spread({"a": [1.0, 3.0], "b": [5.0, 7.0], "c": [9.0, float("nan")]})
    # means 2, 6, 9: sample sd 3.512, range 7; pooled sd: sqrt((1 * 2 + 1 * 2) / 2) = 1.414 (c has one seed)
    assert s.between_sd == pytest.approx(3.5119, abs=1e-4) and s.between_range == pytest.approx(7.0)
    assert s.seed_sd == pytest.approx(math.sqrt(2)) and s.ratio == pytest.approx(2.4833, abs=1e-4)
    assert s.ranks() is True
    noisy = spread({"a": [0.5, 0.7], "b": [0.6, 0.8]})  # 0.1 apart, seeds 0.14 apart: ratio 0.5
    assert noisy.ratio == pytest.approx(0.5) and noisy.ranks() is False
    assert spread({"a": [1.0], "b": [2.0]}).ranks() is None  # no seed sd with one seed each
    assert spread({"a": [1.0, 1.0], "b": [2.0, 2.0]}).ratio == math.inf  # seeds agree exactly: ranks
    assert spread({"a": [1.0, 2.0]}).ranks() is None  # one strategy: nothing to rank


def test_scatter_is_written_and_a_variant_without_matrices_is_left_out(tmp_path):
    variants = {**_variants(), "broken": [(0, _tree(0, with_recon=False))], "empty": [(0, None)]}
    points = scatter_points(variants, TASKS, STAGES)
    assert [p[0] for p in points["recon"]] == ["finetune", "latent_replay"]
    finetune = points["recon"][0]  # x = R_recon[s2, s2] 0.40 / 0.42, y = R_recon[s2, s1] 0.6 / 0.55
    assert finetune[1] == pytest.approx(0.41) and finetune[3] == pytest.approx(0.575)
    assert [p[0] for p in points["probe"]] == ["finetune", "latent_replay", "broken"]  # it has the probe
    path = tmp_path / "stability_plasticity.png"
    assert stability_plasticity_plot(path, variants, TASKS, STAGES)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nothing = tmp_path / "none.png"
    assert not stability_plasticity_plot(nothing, {"empty": [(0, None)]}, TASKS, STAGES) and not nothing.exists()


def test_write_report_puts_the_sanity_block_first_and_marks_uninformative_columns(tmp_path):
    variants = _variants()
    runs = [(f"{v}-s{seed}", v, seed, {}) for v, seeds in variants.items() for seed, _ in seeds]
    results = {f"{v}-s{seed}": m for v, seeds in variants.items() for seed, m in seeds}
    params = {"compare": {"configs": {"toy": {"seeds": [0, 1, 2], "overrides": {}}}}}

    text = write_report(tmp_path, runs, results, params, "toy", None).read_text()

    sanity = text.split("## Strategies")[0]
    assert "## Sanity" in sanity and "| " in sanity and "## Sanity" not in text.split("## Strategies")[1]
    assert "Uninformative (pretraining does not beat random): linear@1.0 ggo." in sanity
    pretraining = _rows(sanity.split("**a.")[1].split("**b.")[0].splitlines(), key_cells=2)
    assert pretraining["linear@1.0 ggo"][1:] == [
        "ggo",
        "0.600 ± 0.000",
        "0.600 ± 0.000",
        "+0.000 ± 0.000 (n=2)",
        "**no**",
        "n/a",  # these trees carry no raw-pixel probe
        "n/a",
    ]
    spreads = _rows(sanity.split("**c.")[1].splitlines())
    assert spreads["~ggo AUC (linear@1.0)"][-1] == "**no** (pretraining does not beat random on its task(s))"
    assert "~avg AUC (linear@1.0)" in spreads and "FWT AUC (linear@1.0)" in spreads  # FWT is over tumour only
    # s2 recon after s2: finetune 0.40 / 0.42, latent 0.45 / 0.47: means 0.41, 0.46 -> sd 0.0354; seeds 0.0141
    assert spreads["s2 recon after s2"][1:] == ["0.0354", "0.0500", "0.0141", "2.50", "yes"]
    main = _rows(text.split("## Strategies")[1].split("## Every probe")[0].splitlines())
    assert main["finetune"][3:5] == ["~0.425 ± 0.035", "0.810 ± 0.014"]  # ggo marked, tumour not
    # averages over ggo are marked too: avg AUC (every task), BWT (s1's tasks); FWT (s2's: tumour) is not
    assert main["finetune"][5:8] == ["~0.617 ± 0.011", "~-0.175 ± 0.035", "0.100 ± 0.000"]
    assert main["latent_replay"][2] == "2/1 (failed: seeds [2])"
    plasticity = _rows(text.split("## Plasticity and stability")[1].split("## Privacy")[0].splitlines())
    # new: recon after s2, s2 val MAE, linear on tumour; kept: s1 recon after s2, linear on ggo after s2 (marked)
    assert plasticity["finetune"][1:] == [
        "0.4100 ± 0.0141",
        "0.3100 ± 0.0141",
        "0.810 ± 0.014",
        "0.5750 ± 0.0354",
        "~0.425 ± 0.035",
    ]
    assert (tmp_path / "figures" / "stability_plasticity.png").exists()
    assert "[stability_plasticity.png](figures/stability_plasticity.png)" in text
