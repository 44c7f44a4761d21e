"""reports/compare.md from hand-made experiment metrics: mean +- sd over seeds, failed runs kept, figures."""

from __future__ import annotations

import numpy as np

from cssl_core.replay.buffer import ReplayBuffer
from tasks.compare_report import write_report
from tasks.report import as_metric_tree

STAGES, TASKS = ["s1", "s2"], ["ggo", "tumour"]


def _tree(final_auc: tuple[float, float], token_avg: float, random_auc: float, keeps_raw: bool) -> dict:
    linear_r = np.array([[0.5, 0.5], list(final_auc)])
    summary = {
        "stages": STAGES,
        "tasks": TASKS,
        "strategy": "x",
        "recon": {"R": np.array([[0.7, np.nan], [0.72, 0.6]]), "average_final": 0.66, "bwt": 0.02},
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

    def __init__(self, histories: dict[str, str], buffers: dict[str, ReplayBuffer]) -> None:
        self.histories, self.buffers = histories, buffers

    def text(self, name: str, path: str) -> str | None:
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
    # a: ggo AUC 0.6 and 0.8 -> 0.700 +- 0.141 (sample sd); tumour 0.9 twice -> 0.900 +- 0.000
    assert "| a | false | 2/0 | 0.700 ± 0.141 | 0.900 ± 0.000 | 0.800 ± 0.071 |" in rows["a"]
    assert rows["a"].endswith("| 420 ± 0 | 100 ± 0 | 2048 ± 0 |")  # steps, train s, buffer bytes
    assert rows["b"].startswith("| b | true | 1/1 (failed: seeds [1]) | 0.400 | 0.500 | 0.450 |")
    assert "Measured wall time of the whole comparison: 2.1 min." in text
    probe_rows = [line for line in text.split("## Every probe")[1].splitlines() if line.startswith("| ")]
    assert probe_rows[0] == "| strategy | linear avg AUC | linear BWT | token avg AUC | token BWT |"
    by_name = {line.split(" | ")[0].strip("| "): line for line in probe_rows[1:]}
    assert "| 0.800 ± 0.071 | 0.000 ± 0.000 | 0.800 ± 0.141 | -0.050 ± 0.000 |" in by_name["a"]
    # references: mean over the three finished runs of the per-run task average
    assert by_name["(random encoder)"].startswith("| (random encoder) | 0.567 ± 0.115 |")
    assert by_name["(raw pixels, linear)"].startswith("| (raw pixels, linear) | 0.600 ± 0.000 |")
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert figures == {"R_recon_a.png", "R_recon_b.png", "auc_per_stage.png", "loss_curves.png", "buffer_tsne.png"}
    for name in figures:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
