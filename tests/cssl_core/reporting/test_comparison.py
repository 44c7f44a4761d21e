"""reports/compare.md from hand-made experiment metrics: mean +- sd over seeds, failed runs kept, figures."""

from __future__ import annotations

import json
import statistics

import numpy as np

from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.reporting.comparison import write_report
from cssl_core.reporting.tree import as_metric_tree

STAGES, TASKS = ["s1", "s2"], ["ggo", "tumour"]


def _tree(
    final_auc: tuple[float, float], token_avg: float, random_auc: float, keeps_raw: bool, s1_recon_after_s2=0.72
) -> dict:
    linear_r = np.array([[0.5, 0.5], list(final_auc)])
    summary = {
        "stages": STAGES,
        "tasks": TASKS,
        "strategy": "x",
        "recon": {"R": np.array([[0.7, np.nan], [s1_recon_after_s2, 0.6]]), "average_final": 0.66, "bwt": 0.02},
        "recon_own": {"R": np.array([[0.7, np.nan], [3.5, 0.6]]), "average_final": 2.05, "bwt": 2.8},
        "cka": {"R": np.eye(2), "bwt": -0.1},
        "linear@1.0": {
            "R": linear_r,
            "random_encoder": [random_auc, random_auc],
            "average_final": float(np.mean(final_auc)),
            "bwt": 0.0,
            "fwt": 0.1,
        },
        "token@1.0": {"R": np.full((2, 2), token_avg), "average_final": token_avg, "bwt": -0.05},
        "pixels@1.0": {"per_task": {"ggo": 0.55, "tumour": 0.65}},
        "cost": {"train_seconds": 100.0, "steps": 420, "buffer_bytes": 2048, "keeps_raw_images": keeps_raw},
    }
    return as_metric_tree(summary)


class InMemoryRuns:
    """The RunFiles protocol over dicts (the DVC/git-backed one is exercised by tests/e2e/test_compare.py)."""

    def __init__(
        self,
        histories: dict[str, str],
        buffers: dict[str, ReplayBuffer],
        texts: dict[tuple[str, str], str] | None = None,  # (name, path) -> any other file, e.g. a privacy report
    ) -> None:
        self.histories, self.buffers, self.texts = histories, buffers, texts or {}

    def text(self, name: str, path: str) -> str | None:
        if (name, path) in self.texts:
            return self.texts[(name, path)]
        return self.histories.get(name) if path.endswith("-history.csv") else None

    def buffer(self, name: str, stage: str) -> ReplayBuffer | None:
        return self.buffers.get(name)


def test_table_means_sds_failures_and_figures(tmp_path):
    runs = [
        ("a-s0", "a", 0, {}),
        ("a-s1", "a", 1, {}),
        ("b-s0", "b", 0, {}),
        ("b-s1", "b", 1, {}),
    ]
    results = {
        "a-s0": _tree((0.6, 0.9), 0.7, 0.5, keeps_raw=False),
        "a-s1": _tree((0.8, 0.9), 0.9, 0.7, keeps_raw=False),
        "b-s0": _tree((0.4, 0.5), 0.6, 0.5, keeps_raw=True),
        "b-s1": None,  # failed
    }
    history = "epoch,loss/mae,loss/total,val/mae\n1,1.0,1.1,0.9\n2,0.8,0.9,0.7\n"
    rng = np.random.default_rng(0)
    latent = ReplayBuffer(
        kind="latent",
        data=rng.normal(size=(12, 4, 8)).astype(np.float16),
        stage=np.array(["s1"] * 6 + ["s2"] * 6),
        window=np.array(["lung"] * 12),
    )
    files = InMemoryRuns({name: history for name in results if results[name]}, {"a-s0": latent})
    params = {"compare": {"configs": {"tiny": {"seeds": [0, 1], "overrides": {}}}}}
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "stale.png").write_bytes(b"old")

    text = write_report(tmp_path, runs, results, params, "tiny", 125.0, files).read_text()

    main = text.split("## Every probe")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in main.splitlines() if line.startswith("| ")}
    # a: ggo AUC 0.6 and 0.8 -> 0.700 +- 0.141 (sample sd); tumour 0.9 twice -> 0.900 +- 0.000. The linear
    # encoder after s1 (0.5) never beats the random one (0.5, 0.7): every linear cell is marked uninformative
    assert "| a | false | 2/0 | ~0.700 ± 0.141 | ~0.900 ± 0.000 | ~0.800 ± 0.071 |" in rows["a"]
    # recon final, recon forgetting, the same through the model's own decoder, CKA BWT, steps, train s, bytes
    tail = "| 0.6600 ± 0.0000 | 0.0200 ± 0.0000 | 2.8000 ± 0.0000 | -0.100 ± 0.000 | 420 ± 0 | 100 ± 0 | 2048 ± 0 |"
    assert rows["a"].endswith(tail)
    assert rows["b"].startswith("| b | true | 1/1 (failed: seeds [1]) | ~0.400 | ~0.500 | ~0.450 |")
    assert "Measured wall time of the whole comparison: 2.1 min, one experiment at a time." in text
    assert text.index("## Sanity") < text.index("## Strategies") < text.index("## Every probe")
    probe_section = text.split("## Every probe")[1].split("## Plasticity")[0]
    probe_rows = [line for line in probe_section.splitlines() if line.startswith("| ")]
    assert probe_rows[0] == (
        "| strategy | linear avg AUC | linear BWT | linear FWT | token avg AUC | token BWT | token FWT |"
    )
    assert "With all training labels (`@1.0`):" in probe_section
    by_name = {line.split(" | ")[0].strip("| "): line for line in probe_rows[1:]}
    # token has no random-encoder reference in these trees: it cannot be checked, so it is not marked
    assert "| ~0.800 ± 0.071 | ~0.000 ± 0.000 |" in by_name["a"]
    assert "| 0.800 ± 0.141 | -0.050 ± 0.000 |" in by_name["a"]
    # references: mean over the three finished runs of the per-run task average
    assert by_name["(random encoder)"].startswith("| (random encoder) | 0.567 ± 0.115 |")
    assert by_name["(raw pixels, linear)"].startswith("| (raw pixels, linear) | 0.600 ± 0.000 |")
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert figures == {
        "R_recon_a.png",
        "R_recon_b.png",
        "auc_per_stage.png",
        "loss_curves.png",
        "buffer_tsne.png",
        "stability_plasticity.png",
    }
    for name in figures:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- privacy: the last stage's audit per variant, the privacy-utility plot and the goal ----


def _audit(
    stage: str,
    attacks: dict[str, tuple[float, float, float]],
    baseline_p95: float,
    reid: float | None,
    labels: tuple[str, ...] = (),
    kind: str = "latent",
    membership: float | None = None,
) -> dict:
    """A data/privacy/<stage>.json as tasks/privacy_audit.py writes it; attacks: name -> (SSIM p50, p95, PSNR p50)."""
    figures = {
        "kind": kind,
        "n_rows": 8,
        "n_buffer": 20,
        "baseline_ssim_p50": baseline_p95 - 0.1,
        "baseline_ssim_p95": baseline_p95,
        "baseline_psnr_p50": 12.0,
        "baseline_psnr_p95": 14.0,
        "finding_auc_true": 0.8,
        "finding_auc_recon": 0.6,
        "reid_auc": reid,
        "membership_auc": reid if membership is None else membership,
    }
    for name, (p50, p95, psnr) in attacks.items():
        figures.update(
            {f"{name}_ssim_p50": p50, f"{name}_ssim_p95": p95, f"{name}_psnr_p50": psnr, f"{name}_psnr_p95": psnr + 2}
        )
    return {
        "buffer": stage,
        "kind": kind,
        "audited": True,
        "labels_in_buffer": list(labels),
        "figures": figures,
    }


def _no_buffer(stage: str) -> dict:
    return {"buffer": stage, "kind": "none", "audited": False, "passed": True, "note": "no buffer"}


def _run(s1_after_s2: float, privacy: dict | None, val_mae: float | None = None) -> dict:
    """Metrics of one finished experiment: stage-1 forgetting = s1_after_s2 - 0.7 (R_recon[s2, s1] - R[s1, s1])."""
    tree = _tree((0.6, 0.9), 0.7, 0.5, keeps_raw=False, s1_recon_after_s2=s1_after_s2)
    if privacy is not None:
        tree["privacy"] = privacy
    if val_mae is not None:
        tree["pretrain"] = {"s1": {"val_mae": val_mae, "loss_mae": 0.5}}
    return tree


def _latent(
    decoder_p95: float, baseline: float, reid: float, forgetting: float, val_mae: float = 0.3, membership=None
) -> dict:
    """A latent replay run whose strongest attack is the decoder (ridge and gradient stay below it)."""
    attacks = {
        "ridge": (0.1, decoder_p95 - 0.1, 15.0),
        "decoder": (decoder_p95 - 0.15, decoder_p95, 17.0),
        "gradient": (0.2, decoder_p95 - 0.05, 16.0),
    }
    s1 = _audit("s1", {"ridge": (0.3, baseline, 18.0)}, baseline, 0.5)  # the s1 release passes the gate
    s2 = _audit("s2", attacks, baseline, reid, membership=membership)
    return _run(0.7 + forgetting, {"s1": s1, "s2": s2}, val_mae)


def _rows(section: str) -> dict[str, list[str]]:
    table = [line for line in section.splitlines() if line.startswith("| ")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}


PRIVACY_RUNS = [
    (f"{variant}-s{seed}", variant, seed, {})
    for variant, seeds in (
        ("finetune", (0, 1)),
        ("latent_replay", (0, 1, 2)),
        ("latent_replay_noise", (0, 1)),
        ("latent_replay_pool", (0, 1)),
        ("latent_replay_adversarial", (0, 1)),
        ("er", (0,)),
    )
    for seed in seeds
]


def _privacy_results() -> dict:
    return {
        # finetune forgets 0.18 and 0.22 of stage 1: mean 0.2, so the goal allows 0.1
        "finetune-s0": _run(0.88, {"s1": _no_buffer("s1"), "s2": _no_buffer("s2")}, 0.31),
        "finetune-s1": _run(0.92, {"s1": _no_buffer("s1"), "s2": _no_buffer("s2")}, 0.33),
        # SSIM fails alone: 0.44 > 0.36 + 0.05
        "latent_replay-s0": _latent(0.42, 0.35, 0.50, 0.04),
        "latent_replay-s1": _latent(0.46, 0.37, 0.52, 0.06),
        "latent_replay-s2": None,  # failed
        # every condition holds
        "latent_replay_noise-s0": _latent(0.38, 0.35, 0.55, 0.08),
        "latent_replay_noise-s1": _latent(0.40, 0.37, 0.57, 0.09),
        # re-identification fails alone: 0.65 > 0.6
        "latent_replay_pool-s0": _latent(0.36, 0.35, 0.64, 0.05, membership=0.5),
        "latent_replay_pool-s1": _latent(0.38, 0.37, 0.66, 0.05, membership=0.5),
        # forgetting fails alone: 0.15 > 0.1; its quality cost shows in the stage-1 val MAE
        "latent_replay_adversarial-s0": _latent(0.30, 0.35, 0.50, 0.14, val_mae=0.40),
        "latent_replay_adversarial-s1": _latent(0.32, 0.37, 0.50, 0.16, val_mae=0.44),
        "er-s0": _run(
            0.71,
            {
                "s1": _audit("s1", {"stored": (1.0, 1.0, 100.0)}, 0.35, 1.0, ("ggo",), "image"),
                "s2": _audit("s2", {"stored": (1.0, 1.0, 100.0)}, 0.36, 1.0, ("ggo",), "image"),
            },
            0.32,
        ),
    }


PARAMS = {"compare": {"configs": {"privacy": {"seeds": [0, 1, 2], "overrides": {}}}}}


def _mean_sd(values: list[float], digits: int = 3) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_privacy_table_plot_and_goal(tmp_path):
    text = write_report(tmp_path, PRIVACY_RUNS, _privacy_results(), PARAMS, "privacy", None).read_text()

    section = text.split("## Privacy")[1].split("Per stage")[0]
    rows = _rows(section)
    assert rows["strategy"][:4] == ["strategy", "buffer", "seeds audited", "strongest attack"]
    lr = dict(zip(rows["strategy"], rows["latent_replay"], strict=True))
    assert lr["buffer"] == "latent" and lr["seeds audited"] == "2/3 (failed: seeds [2])"
    assert lr["strongest attack"] == "decoder"  # the max p95 over ridge, decoder, gradient
    assert lr["SSIM p95"] == _mean_sd([0.42, 0.46]) == "0.440 ± 0.028"
    assert lr["SSIM p50"] == _mean_sd([0.42 - 0.15, 0.46 - 0.15])
    assert lr["PSNR p50 (dB)"] == "17.0 ± 0.0"
    assert lr["mean-slice baseline SSIM p95"] == _mean_sd([0.35, 0.37])
    assert lr["finding AUC on recon"] == "0.600 ± 0.000" and lr["finding AUC on true slices"] == "0.800 ± 0.000"
    assert lr["re-id AUC"] == _mean_sd([0.50, 0.52])
    assert lr["labels in buffer"] == "no"
    assert lr["stage-1 forgetting"] == _mean_sd([0.04, 0.06], 4)
    assert lr["stage-1 val MAE"] == "0.3000 ± 0.0000"
    adversarial = dict(zip(rows["strategy"], rows["latent_replay_adversarial"], strict=True))
    assert adversarial["stage-1 val MAE"] == _mean_sd([0.40, 0.44], 4)
    er = dict(zip(rows["strategy"], rows["er"], strict=True))
    assert er["buffer"] == "image" and er["strongest attack"] == "stored" and er["SSIM p95"] == "1.000"
    assert er["labels in buffer"] == "yes: ggo"
    assert lr["dp epsilon (all stages)"] == "none (no formal guarantee)"
    finetune = dict(zip(rows["strategy"], rows["finetune"], strict=True))
    assert finetune["buffer"] == "none" and finetune["SSIM p95"] == "no buffer" and finetune["re-id AUC"] == "no buffer"
    assert finetune["stage-1 forgetting"] == _mean_sd([0.18, 0.22], 4)
    assert "stage-1 val MAE = validation MAE loss at the end of pretrain@s1" in section
    assert "[privacy_utility.png](figures/privacy_utility.png)" in section
    assert "other patients" in section and "anonym" not in text.lower()

    per_stage = _rows(text.split("Per stage")[1].split("**Privacy goal**")[0])
    assert per_stage["latent_replay"][1:3] == ["0.360 ± 0.014 (ridge)", "0.500 ± 0.000"]  # s1's own audit
    assert per_stage["finetune"][1:] == ["no buffer"] * 4

    goal = {
        line.split(":")[0][2:]: line for line in text.split("**Privacy goal**")[1].splitlines() if line.startswith("- ")
    }
    assert set(goal) == {"latent_replay", "latent_replay_noise", "latent_replay_pool", "latent_replay_adversarial"}
    assert goal["latent_replay_noise"].endswith("-> goal met: yes")
    noise = goal["latent_replay_noise"]
    assert "s2: SSIM p95 0.390 <= 0.360 + 0.05: yes, re-id 0.560: yes, membership 0.560: yes" in noise
    assert "stage-1 forgetting 0.0850 <= 50% of finetune's 0.2000 = 0.1000: yes" in goal["latent_replay_noise"]
    assert "s2: SSIM p95 0.440 <= 0.360 + 0.05: no" in goal["latent_replay"]
    assert "re-id 0.650: no" in goal["latent_replay_pool"]
    assert "stage-1 forgetting 0.1500 <= 50% of finetune's 0.2000 = 0.1000: no" in goal["latent_replay_adversarial"]
    for variant in ("latent_replay", "latent_replay_pool", "latent_replay_adversarial"):
        assert goal[variant].endswith("-> goal met: no"), goal[variant]
        conditions = goal[variant].split(" -> gate")[0].count(": no") + goal[variant].count("0.1000: no")
        assert conditions == 1, goal[variant]  # exactly one condition fails

    plot = tmp_path / "figures" / "privacy_utility.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[privacy_utility.png](figures/privacy_utility.png)" in text.split("Figures: ")[1]


def test_privacy_plot_points_and_baseline(tmp_path, monkeypatch):
    """The plot's points are the table's means with sample sds; the dashed line is the baseline's mean."""
    import cssl_core.reporting.comparison as comparison

    drawn = {}

    def capture(path, summary):
        drawn["path"] = path
        drawn["result"] = real(path, summary)
        return drawn["result"]

    real = comparison.privacy_utility_plot
    monkeypatch.setattr(comparison, "privacy_utility_plot", capture)
    results = _privacy_results()
    write_report(tmp_path, PRIVACY_RUNS, results, PARAMS, "privacy", None)
    assert drawn["result"] is True and drawn["path"].name == "privacy_utility.png"

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    recorded = []
    monkeypatch.setattr(plt.Axes, "errorbar", lambda self, x, y, **kw: recorded.append((x, y, kw)))
    lines = []
    monkeypatch.setattr(plt.Axes, "axvline", lambda self, x, **kw: lines.append(x))
    real(
        tmp_path / "again.png",
        comparison.privacy_summary(
            {v: [(s, results[n]) for n, vv, s, _ in PRIVACY_RUNS if vv == v] for _, v, _, _ in PRIVACY_RUNS}, STAGES
        ),
    )
    points = {kw["label"]: (x, y, kw["xerr"], kw["yerr"]) for x, y, kw in recorded}
    assert set(points) == {
        "latent_replay",
        "latent_replay_noise",
        "latent_replay_pool",
        "latent_replay_adversarial",
        "er",
    }  # finetune has no audited buffer: no point
    x, y, x_sd, y_sd = points["latent_replay"]
    assert np.isclose(x, 0.44) and np.isclose(y, 0.05)
    assert np.isclose(x_sd, statistics.stdev([0.42, 0.46])) and np.isclose(y_sd, statistics.stdev([0.04, 0.06]))
    assert points["er"][2] == 0.0  # one seed: no spread
    baselines = [0.35, 0.37] * 4 + [0.36]
    assert len(lines) == 1 and np.isclose(lines[0], statistics.mean(baselines))


def test_privacy_without_buffers_failed_seeds_and_dvc_dropped_fields(tmp_path):
    """finetune alone (no buffer), a failed seed, a run without any audit, and a report as `dvc exp show` gives
    it (lists and nulls dropped, no pretrain record): the report renders and says what it does not know."""
    runs = [
        ("finetune-s0", "finetune", 0, {}),
        ("finetune-s1", "finetune", 1, {}),
        ("joint-s0", "joint", 0, {}),
        ("latent_replay-s0", "latent_replay", 0, {}),
    ]
    shown = _audit("s2", {"decoder": (0.2, 0.3, 16.0)}, 0.35, None)
    del shown["labels_in_buffer"], shown["figures"]["reid_auc"]  # dropped by dvc's metrics reader
    results = {
        "finetune-s0": _run(0.9, {"s1": _no_buffer("s1"), "s2": _no_buffer("s2")}),
        "finetune-s1": None,
        "joint-s0": _run(0.75, None),  # an experiment from before the audit stage
        "latent_replay-s0": _run(0.74, {"s2": shown}),
    }
    text = write_report(tmp_path, runs, results, PARAMS, "privacy", None).read_text()

    rows = _rows(text.split("## Privacy")[1].split("Per stage")[0])
    header = rows["strategy"]
    finetune = dict(zip(header, rows["finetune"], strict=True))
    assert finetune["seeds audited"] == "0/2 (failed: seeds [1])" and finetune["SSIM p50"] == "no buffer"
    assert finetune["stage-1 forgetting"] == "0.2000" and finetune["stage-1 val MAE"] == "n/a"
    assert dict(zip(header, rows["joint"], strict=True))["SSIM p95"] == "no audit"
    lr = dict(zip(header, rows["latent_replay"], strict=True))
    assert lr["SSIM p95"] == "0.300" and lr["re-id AUC"] == "n/a" and lr["labels in buffer"] == "?"
    assert "n/a: pretrain@s1's run record (data/metrics/pretrain-s1.json) is not in these experiments' metrics" in text
    # a missing re-id AUC is not a pass
    goal = [line for line in text.split("**Privacy goal**")[1].splitlines() if line.startswith("- latent_replay")]
    assert len(goal) == 1 and "re-id n/a: no" in goal[0] and goal[0].endswith("goal met: no")
    assert "stage-1 forgetting 0.0400 <= 50% of finetune's 0.2000 = 0.1000: yes" in goal[0]

    # the whole report file at the experiment's commit fills in what dvc dropped
    full = _audit("s2", {"decoder": (0.2, 0.3, 16.0)}, 0.35, 0.52, ("tumour",))
    files = InMemoryRuns({}, {}, {("latent_replay-s0", "data/privacy/s2.json"): json.dumps(full)})
    text = write_report(tmp_path, runs, results, PARAMS, "privacy", None, files).read_text()
    lr = dict(zip(header, _rows(text.split("## Privacy")[1].split("Per stage")[0])["latent_replay"], strict=True))
    assert lr["re-id AUC"] == "0.520" and lr["labels in buffer"] == "yes: tumour"
    assert results["latent_replay-s0"]["privacy"]["s2"] is shown  # the caller's metrics are left as they were


def test_unfinished_experiments_are_named_once_and_never_counted_as_failed(tmp_path):
    runs = [("a-s0", "a", 0, {}), ("a-s1", "a", 1, {}), ("b-s0", "b", 0, {}), ("b-s1", "b", 1, {})]
    results = {"a-s0": _tree((0.6, 0.9), 0.7, 0.5, keeps_raw=False), "a-s1": None, "b-s0": None, "b-s1": None}
    params = {"compare": {"configs": {"tiny": {"seeds": [0, 1], "overrides": {}}}}}

    text = write_report(tmp_path, runs, results, params, "tiny", None, unfinished={"a-s1", "b-s1"}).read_text()

    assert "**Not finished when this report was written** (2 of 4 experiments" in text
    assert "comparison was stopped before them): a-s1, b-s1." in text
    main = text.split("## Every probe")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in main.splitlines() if line.startswith("| ")}
    assert rows["a"].startswith("| a | false | 1/0 |")  # the queued seed is neither a success nor a failure
    assert rows["b"].startswith("| b | ? | 0/1 (failed: seeds [0]) |")  # b-s0 really failed

    finished = write_report(tmp_path, runs, results, params, "tiny", None).read_text()
    assert "Not finished" not in finished and "| a | false | 1/1 (failed: seeds [1]) |" in finished


def test_no_buffer_only_and_no_audits(tmp_path):
    runs = [("finetune-s0", "finetune", 0, {})]
    only_finetune = {"finetune-s0": _run(0.9, {"s1": _no_buffer("s1"), "s2": _no_buffer("s2")})}
    text = write_report(tmp_path, runs, only_finetune, PARAMS, "privacy", None).read_text()
    assert "No privacy-utility plot" in text and "- no latent buffer was audited in this comparison" in text
    assert not (tmp_path / "figures" / "privacy_utility.png").exists()

    text = write_report(tmp_path, runs, {"finetune-s0": _run(0.9, None)}, PARAMS, "privacy", None).read_text()
    assert "No privacy audit (data/privacy/<stage>.json) in these experiments' metrics." in text


def test_audit_figures_reads_the_keys_run_audit_writes():
    """The table reads the figure names cssl_core.privacy.run_audit really writes (an image buffer: no model)."""
    from cssl_core.privacy import AuditConfig, run_audit
    from cssl_core.reporting.comparison import audit_figures

    rng = np.random.default_rng(0)
    victims = rng.integers(0, 256, size=(10, 16, 16)).astype(np.uint8)
    attacker = rng.integers(0, 256, size=(20, 16, 16)).astype(np.uint8)
    buffer = ReplayBuffer("image", victims, np.array(["s1"] * 10), np.array(["lung"] * 10))
    queries = np.concatenate([victims[:4], attacker[:4]]).astype(np.float32) / 255.0
    result = run_audit(
        None,
        buffer,
        victims,
        attacker,
        config=AuditConfig(max_rows=6),
        attacker_labels=np.arange(20) % 2,
        truth_labels=np.arange(10) % 2,
        queries=queries,
        query_is_member=np.arange(8) < 4,
    )
    report = {"audited": True, "kind": "image", "labels_in_buffer": [], "figures": result.figures}

    got = audit_figures(report)

    assert got["attacker"] == "stored" and got["ssim_p95"] > 0.99 and got["psnr_p50"] == 100.0
    assert got["baseline_ssim_p95"] == result.figures["baseline_ssim_p95"] < 0.5
    for key in ("ssim_p50", "finding_auc_recon", "finding_auc_true", "reid_auc"):
        assert np.isfinite(got[key]), key
    assert got["labels"] == []
    assert audit_figures({"audited": False, "kind": "none"}) is None


def test_the_default_mode_is_the_least_forgetting_variant_that_passes_the_gate_on_every_stage():
    from cssl_core.reporting.comparison import default_mode_choice, privacy_summary

    runs = {
        "finetune": [(s, _run(0.8, {"s1": _no_buffer("s1"), "s2": _no_buffer("s2")})) for s in (0, 1, 2)],
        "latent_replay": [(s, _latent(0.95, 0.6, 0.9, 0.01)) for s in (0, 1, 2)],  # forgets least, leaks
        "latent_replay_pool": [(s, _latent(0.80, 0.6, 0.7, 0.015)) for s in (0, 1, 2)],  # leaks
        "latent_replay_aggregate": [(s, _latent(0.64, 0.6, 0.5, 0.055)) for s in (0, 1, 2)],  # 0.04 above: passes
        "latent_replay_dp": [(s, _latent(0.61, 0.6, 0.5, 0.045)) for s in (0, 1, 2)],  # passes, forgets less
    }
    line = default_mode_choice(privacy_summary(runs, ["s1", "s2"]))
    assert "**latent_replay_dp**" in line and "0.0450" in line and "2 variant(s) pass" in line
    runs["latent_replay_dp"] = [(s, _latent(0.61, 0.6, 0.5, 0.045, membership=0.7)) for s in (0, 1, 2)]
    assert "**latent_replay_aggregate**" in default_mode_choice(privacy_summary(runs, ["s1", "s2"]))
    runs["latent_replay_aggregate"] = [(s, _latent(0.66, 0.6, 0.5, 0.055)) for s in (0, 1, 2)]  # 0.06 above
    line = default_mode_choice(privacy_summary(runs, ["s1", "s2"]))
    assert "No default mode chosen" in line
    assert "closest: `latent_replay_aggregate` (3 leaking seed-stage figure(s), worst mean 0.010 over" in line
    only_finetune = privacy_summary({"finetune": runs["finetune"]}, ["s1", "s2"])
    assert "No default mode chosen" in default_mode_choice(only_finetune)


def test_a_formal_modes_epsilon_is_shown_beside_its_attacks(tmp_path):
    """The accountant's epsilon (data/privacy/<k>.json "dp", all stages composed) sits in the privacy table."""
    results = _privacy_results()
    for seed, epsilon in ((0, 11.2), (1, 11.4)):
        run = _latent(0.40, 0.35, 0.55, 0.05)
        run["privacy"]["s2"]["dp"] = {"stage_epsilon": 8.0, "total_epsilon": epsilon, "total_delta": 1e-4}
        results[f"latent_replay_dp-s{seed}"] = run
    runs = [*PRIVACY_RUNS, *((f"latent_replay_dp-s{s}", "latent_replay_dp", s, {}) for s in (0, 1))]
    text = write_report(tmp_path, runs, results, PARAMS, "privacy", None).read_text()
    rows = _rows(text.split("## Privacy")[1].split("Per stage")[0])
    dp = dict(zip(rows["strategy"], rows["latent_replay_dp"], strict=True))
    assert dp["dp epsilon (all stages)"] == _mean_sd([11.2, 11.4], 2) and dp["re-id AUC"] == "0.550 ± 0.000"


def test_the_goal_judges_each_seeds_release_as_the_gate_does():
    """An AUC above 0.6 whose interval over patients reaches chance is not a leak at gate@, so not in the report
    either; one seed whose interval clears chance is enough for a no, with the count of seeds that leak."""
    from cssl_core.reporting.comparison import default_mode_choice, privacy_goal, privacy_summary

    def run(reid: float, low: float, high: float) -> dict:
        metrics = _latent(0.36, 0.35, reid, 0.01, membership=0.5)
        metrics["privacy"]["s2"]["figures"].update({"reid_ci_low": low, "reid_ci_high": high})
        return metrics

    finetune = [(s, _run(0.8, {"s1": _no_buffer("s1"), "s2": _no_buffer("s2")})) for s in (0, 1, 2)]
    runs = {
        "finetune": finetune,
        # mean 0.63 > 0.6 on every seed, but each interval includes 0.5: the gate passes every release
        "latent_replay_dp": [(s, run(0.63, 0.35, 0.9)) for s in (0, 1, 2)],
        # the same mean, one seed's interval clear of chance: that seed's release leaks
        "latent_replay_pool": [(0, run(0.63, 0.35, 0.9)), (1, run(0.63, 0.52, 0.75)), (2, run(0.63, 0.4, 0.8))],
    }
    summary = privacy_summary(runs, ["s1", "s2"])
    goal = {line.split(":")[0][2:]: line for line in privacy_goal(summary)}

    assert "re-id 0.630: yes (3/3 seeds above it within chance)" in goal["latent_replay_dp"]
    assert "-> gate: yes" in goal["latent_replay_dp"] and goal["latent_replay_dp"].endswith("goal met: yes")
    assert "re-id 0.630: no (1/3 seeds)" in goal["latent_replay_pool"] and "-> gate: no" in goal["latent_replay_pool"]
    choice = default_mode_choice(summary)
    assert "**latent_replay_dp**" in choice and "1 variant(s) pass" in choice
    del summary["latent_replay_dp"]  # pool: every mean within its threshold, one seed's release leaks
    assert "closest: `latent_replay_pool` (1 leaking seed-stage figure(s), worst mean 0.030 over" in (
        default_mode_choice(summary)
    )
