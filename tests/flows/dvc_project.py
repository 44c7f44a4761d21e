"""Builds a tiny real git + DVC project with the file layout `cssl compare` reads back from its experiments.

One stage writes, from the `train.seed` param, what the pipeline's stages write for a compare report: the
summary, a privacy report and a pretrain run record (DVC metrics, git-tracked), a loss history (a git-tracked
plain output) and data/buffers (a cached output: a real replay buffer for s1, "no buffer" for s2). The
stage is stdlib-only Python, so a queued or run experiment costs about a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cssl_core.replay.buffer import ReplayBuffer, save_buffer

STAGE = r'''import json, os, shutil, sys

seed = int(sys.argv[1])
for folder in ("data/summary", "data/privacy", "data/metrics", "data/buffers/s2"):
    os.makedirs(folder, exist_ok=True)
summary = {"stages": {"s1": 0}, "recon": {"R": {"s1": {"s1": 0.5 + seed}}}, "windows": ["lung"], "note": None}
privacy = {"buffer": "s1", "kind": "latent", "passed": True, "figures": {"reid_auc": 0.5 + seed / 100},
           "labels_in_buffer": ["has_finding"]}
for path, content in (("data/summary/metrics.json", summary), ("data/privacy/s1.json", privacy),
                      ("data/metrics/pretrain-s1.json", {"val_mae": 0.3 - seed / 100, "train_seconds": 10.0 + seed})):
    with open(path, "w") as out:
        json.dump(content, out, indent=2)
with open("data/metrics/pretrain-s1-history.csv", "w") as out:
    out.write(f"epoch,train_loss,val_loss\n0,{1.0 + seed},{1.1 + seed}\n1,{0.9 + seed},{1.0 + seed}\n")
shutil.rmtree("data/buffers/s1", ignore_errors=True)
shutil.copytree(f"buffers_src/seed-{seed}", "data/buffers/s1")
with open("data/buffers/s2/meta.json", "w") as out:
    json.dump({"kind": "none", "n": 0}, out)
'''

DVC_YAML = """stages:
  run:
    cmd: python stage.py ${train.seed}
    deps: [stage.py, buffers_src]
    params: [train.seed]
    outs:
      - data/buffers
      - data/metrics/pretrain-s1-history.csv:
          cache: false
    metrics:
      - data/summary/metrics.json:
          cache: false
      - data/privacy/s1.json:
          cache: false
      - data/metrics/pretrain-s1.json:
          cache: false
"""
SEEDS = (3, 4)
# the files each experiment writes, as read from the workspace right after it ran
WRITTEN = (
    "params.yaml",
    "data/summary/metrics.json",
    "data/privacy/s1.json",
    "data/metrics/pretrain-s1.json",
    "data/metrics/pretrain-s1-history.csv",
    "data/buffers/s1/meta.json",
    "data/buffers/s2/meta.json",
)


def source_buffer(seed: int) -> ReplayBuffer:
    """The replay buffer the stage copies into data/buffers/s1 when train.seed is `seed`."""
    latents = np.random.default_rng(seed).standard_normal((4, 2, 2)).astype(np.float16)
    return ReplayBuffer("latent", latents, np.full(4, "s1"), np.full(4, "lung"))


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The DVC CLI of this interpreter in `root`, its bin dir first on PATH so that stages find `python`."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )


def make_dvc_project(root: Path) -> Path:
    """git init + dvc init + the stage, all committed (experiments need a baseline commit)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("train:\n  seed: 0\n  tags: [a, b]\n")
    for seed in (0, *SEEDS, 5):
        save_buffer(source_buffer(seed), root / "buffers_src" / f"seed-{seed}")
    for command in (["init", "-q", "-b", "main"], ["config", "user.name", "t"], ["config", "user.email", "t@t"]):
        subprocess.run(["git", *command], cwd=root, check=True)
    dvc(root, "init", "-q")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "tiny"], cwd=root, check=True)
    return root


@dataclass
class Experiments:
    root: Path
    written: dict[str, dict[str, str]]  # experiment name -> {path: text right after it ran}
