"""A shared DVC remote over the S3 API: push from one clone, pull into a fresh one, byte-identical and clean.

The project (tests/flows/dvc_project.py: a one-stage pipeline with a cached directory output) gets a
`dvc add`-ed file too, runs for real, and pushes to s3://<bucket>/dvc on a real S3-API server. The committed
.dvc/config names only the remote URL and endpoint: credentials come from the environment in the first clone
and from `dvc remote modify --local` (git-ignored) in the second, which sees nothing but git and the remote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.flows.dvc_project import make_dvc_project
from tests.servers import CREDENTIALS, REGION, S3Server, server_env

pytestmark = pytest.mark.slow
PREFIX = "dvc"


def _env(credentials: dict[str, str], home: Path) -> dict[str, str]:
    """No AWS config files and no instance metadata: the only credentials are the ones given here."""
    env = server_env(DVC_NO_ANALYTICS="1", **REGION, **credentials)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        if name not in credentials:
            env.pop(name, None)
    env.update(AWS_CONFIG_FILE=str(home / "none"), AWS_SHARED_CREDENTIALS_FILE=str(home / "none"))
    return env


def _run(root: Path, env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dvc", *args] if args[0] != "git" else list(args)
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert done.returncode == 0, f"{' '.join(args)} failed in {root}:\n{done.stdout}\n{done.stderr}"
    return done


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "data").rglob("*")) if p.is_file()}


def test_push_to_s3_then_a_fresh_clone_pulls_identical_files(s3_server: S3Server, tmp_path: Path):
    env = _env(CREDENTIALS, tmp_path)
    origin = make_dvc_project(tmp_path / "origin")
    raw = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
    (origin / "data").mkdir(exist_ok=True)
    (origin / "data" / "raw.bin").write_bytes(raw)
    _run(origin, env, "add", "-q", "data/raw.bin")
    _run(origin, env, "repro", "-q")
    _run(origin, env, "remote", "add", "-d", "shared", f"s3://{s3_server.bucket}/{PREFIX}")
    _run(origin, env, "remote", "modify", "shared", "endpointurl", s3_server.endpoint)
    _run(origin, env, "git", "add", "-A")
    _run(origin, env, "git", "commit", "-qm", "outputs and the shared remote")

    # nothing secret is committed: the key id and secret appear in no git-tracked file
    for secret in CREDENTIALS.values():
        found = _run(origin, env, "git", "grep", "-l", secret, ok=False)
        assert found.returncode == 1 and not found.stdout, f"{secret!r} committed in {found.stdout}"
    assert s3_server.endpoint in (origin / ".dvc" / "config").read_text()

    _run(origin, env, "push", "-q")
    cached = {
        str(p.relative_to(origin / ".dvc" / "cache"))
        for p in (origin / ".dvc" / "cache").rglob("*")
        if p.is_file() and "runs" not in p.parts
    }
    pushed = {key.removeprefix(f"{PREFIX}/") for key in s3_server.keys(f"{PREFIX}/")}
    assert cached and cached <= pushed, f"not in the bucket: {sorted(cached - pushed)}"
    expected = _files(origin)
    assert {"data/raw.bin", "data/buffers/s1/meta.json", "data/summary/metrics.json"} <= set(expected)

    clone = tmp_path / "clone"
    _run(tmp_path, env, "git", "clone", "-q", str(origin), str(clone))
    assert not (clone / "data" / "raw.bin").exists() and not (clone / "data" / "buffers").exists()
    assert not (clone / ".dvc" / "cache").exists()

    # the clone has no credentials in its environment: without any, the pull fails and says why
    bare = _env({}, tmp_path)
    refused = _run(clone, bare, "pull", ok=False)
    assert refused.returncode != 0 and "credentials" in (refused.stdout + refused.stderr).lower(), refused.stderr

    # secrets go to .dvc/config.local, which git ignores
    _run(clone, bare, "remote", "modify", "--local", "shared", "access_key_id", CREDENTIALS["AWS_ACCESS_KEY_ID"])
    _run(clone, bare, "remote", "modify", "--local", "shared", "secret_access_key",
         CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    assert _run(clone, bare, "git", "status", "--porcelain").stdout == ""

    _run(clone, bare, "pull", "-q")
    assert _files(clone) == expected
    status = _run(clone, bare, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    cloud = _run(clone, bare, "status", "--cloud")
    assert "Cache and remote 'shared' are in sync." in cloud.stdout, cloud.stdout
    assert os.listdir(clone / ".dvc" / "cache")  # the pull went through the clone's own cache
