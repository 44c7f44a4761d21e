"""Helpers shared by tests: tiny project trees and a leak scanner that looks inside containers."""

from __future__ import annotations

import copy
import gzip
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", ".dvcignore")
PROJECT_DIRS = ("cssl_core", "tasks", "flows", ".dvc")

ATTACKER = "phantom_c"  # the privacy audit's attacker cohort: in no continual stage, so in no buffer
TINY_PARAMS_OVERRIDES = {
    "data": {
        "demo": {
            "phantom_a": {"n_patients": 2, "n_slices": 10, "matrix": 64, "pixel_spacing_mm": 5.0},
            "phantom_b": {"n_patients": 2, "n_slices": 10, "matrix": 56, "pixel_spacing_mm": 5.0},
        }
    },
    "ingest": {"cohorts": ["phantom_a", "phantom_b", ATTACKER], "workers": 1},
    "window": {"size": 32},
    "ssl": {
        "model": {"img_size": 32, "patch_size": 8, "hidden_size": 32, "num_layers": 4, "num_heads": 2, "mlp_dim": 64,
                  "decoder_hidden_size": 32, "decoder_num_layers": 1, "decoder_num_heads": 2, "decoder_mlp_dim": 64,
                  "split_block": 2},
        "batch_size": 8,
        "workers": 0,
        "val_fraction": 0.5,
        "audit_fraction": 0.0,  # two patients per cohort: one trains, one validates (audit tests hold out more)
        "train": {"epochs": 2, "warmup_epochs": 1},
    },
    # The tiny cohorts (one training patient per stage) cannot form a release that passes the privacy gate, so the
    # tiny pipeline, which tests the DAG's mechanics, keeps plain latents and a gate that warns; the tests of the
    # shipped private default and of a failing gate set their own.
    "replay": {"privacy": {"mode": "none"}},
    "privacy": {"attacker_cohort": ATTACKER, "max_rows": 8, "queries": 4,
                "attack": {"decoder_steps": 20, "gradient_steps": 20, "decoder_width": 32},
                "gate": {"mode": "warn"}},
}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def tiny_params() -> dict:
    """A fresh tiny configuration per call: the overrides are copied, so a test that edits a list of its result
    (ingest.cohorts, say) leaves the next call's, and TINY_PARAMS_OVERRIDES, as they were."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params = _merge(params, copy.deepcopy(TINY_PARAMS_OVERRIDES))
    params["data"]["demo"] = {k: v for k, v in params["data"]["demo"].items() if k in ("phantom_a", "phantom_b")}
    params["data"]["demo"][ATTACKER] = dict(params["data"]["demo"]["phantom_a"], seed=37)
    params["quality"]["cohorts"][ATTACKER] = {}
    tiny_cohorts = set(params["ingest"]["cohorts"])
    params["eval"]["tasks"] = {k: v for k, v in params["eval"]["tasks"].items() if v["cohort"] in tiny_cohorts}
    params["eval"].update({"folds": 2, "recon_slices": 16})
    params["compare"]["configs"]["tiny"] = {"seeds": [0, 1], "variants": ["finetune", "latent_replay"],
                                            "overrides": {"eval.probes": ["linear"], "eval.fractions": [1.0]}}
    params["compare"]["configs"]["tiny_again"] = {**params["compare"]["configs"]["tiny"], "seeds": [2, 3],
                                                  "variants": ["finetune"]}
    return params


def make_tiny_project(root: Path, params: dict | None = None) -> Path:
    """A git + DVC project with this repo's pipeline and a tiny two-cohort phantom configuration."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy2(REPO_ROOT / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(
            REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache")
        )
    (root / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    shutil.copy2(REPO_ROOT / ".gitignore", root / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _texts(path: Path) -> Iterable[bytes]:
    data = path.read_bytes()
    yield data
    if path.suffix == ".gz":
        yield gzip.decompress(data)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        yield frame.to_csv().encode("utf-8", "replace")
        yield " ".join(map(str, frame.columns)).encode()


def find_leaks(roots: Iterable[Path], needles: Iterable[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in any file under roots, looking inside .gz and parquet."""
    encoded = [(n, n.encode("utf-8")) for n in needles if n]
    hits = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            for blob in _texts(path):
                for needle, raw in encoded:
                    if raw in blob:
                        hits.append((str(path), needle))
    return sorted(set(hits))


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The expected-failure contract of every `cssl` command: exit 2, exactly one stderr line starting `error:`,
    no traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
