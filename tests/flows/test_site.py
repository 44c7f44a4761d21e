"""`cssl site push/pull`: exactly a stage's model and buffer cross, through real DVC, and the boundary refuses.

The boundary checks are pure (paths from cssl_core/layout.py). The transfer tests use a real git + DVC project
with a local-directory DVC remote (same push/pull code path as S3, no server needed) whose one stdlib stage
writes what the pipeline writes for stage s1: a model, a replay buffer, an audit report (`cache: false`) and a
windowed cohort (a cached output the boundary must keep at the site). tests/e2e/test_two_sites.py does it
with two sites, the real pipeline and an S3 remote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cssl_core.layout import StagePaths
from cssl_core.privacy.gate import check
from flows.site import BoundaryError, check_target, plan_push, stage_artifacts
from tests.helpers import REPO_ROOT, tiny_params

CSSL = str(Path(sys.executable).parent / "cssl")
WINDOWED = "data/windowed/phantom_a-mediastinal"

STAGE = r'''import json, os, sys
kind = open("kind.txt").read().strip()
if sys.argv[1] == "windowed":
    os.makedirs("data/windowed/phantom_a-mediastinal", exist_ok=True)
    open("data/windowed/phantom_a-mediastinal/slices.npy", "wb").write(b"PRIVATE-PIXELS" * 100)
    sys.exit(0)
for folder in ("data/models/s1", "data/buffers/s1", "data/privacy"):
    os.makedirs(folder, exist_ok=True)
open("data/models/s1/weights.bin", "wb").write(b"model-s1" * 100)
open("data/models/s1/split.json", "w").write('{"train": [], "val": []}')
open("data/buffers/s1/meta.json", "w").write(json.dumps({"kind": kind, "keeps_raw_images": kind == "image"}))
open("data/buffers/s1/rows.bin", "wb").write(b"latents-s1" * 100)
open("data/privacy/s1.json", "w").write(json.dumps({"buffer": "s1", "audited": True}))
open("data/privacy/s1.gate.json", "w").write(json.dumps({"buffer": "s1", "passed": True, "reasons": []}))
open("data/privacy/s1.cleared.json", "w").write(json.dumps({"buffer": "s1", "cleared": True}))
'''
DVC_YAML = {
    "stages": {
        "windowed": {"cmd": f"{sys.executable} make.py windowed", "deps": ["make.py"], "outs": [WINDOWED]},
        "s1": {"cmd": f"{sys.executable} make.py s1", "deps": ["make.py", "kind.txt", WINDOWED],
               "outs": ["data/models/s1", "data/buffers/s1",
                        *({f"data/privacy/s1{suffix}": {"cache": False}} for suffix in (".json", ".gate.json",
                                                                                        ".cleared.json"))]},
    }
}


def _paths() -> StagePaths:
    return StagePaths("s1", "init", "phantom_a", "mediastinal", 0)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DVC_NO_ANALYTICS": "1"}
    command = [CSSL, *args[1:]] if args[0] == "cssl" else list(args)
    if args[0] == "dvc":
        command = [sys.executable, "-m", "dvc", *args[1:]]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def ok(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = run(cwd, *args)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def remote_objects(remote: Path) -> set[str]:
    """md5 of every object in a DVC 3 remote (files/md5/ab/cdef... -> abcdef...)."""
    return {p.parent.name + p.name for p in remote.rglob("*") if p.is_file()}


def out_objects(root: Path, cache: Path, path: str) -> set[str]:
    """The objects of one dvc.lock output: its md5, and for a directory its .dir manifest's files."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                md5 = out["md5"]
                objects = {md5}
                if md5.endswith(".dir"):
                    manifest = json.loads((cache / "files" / "md5" / md5[:2] / md5[2:]).read_text())
                    objects |= {entry["md5"] for entry in manifest}
                return objects
    raise AssertionError(f"{path} not in dvc.lock")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    root, remote = tmp_path / "site_a", tmp_path / "remote"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    (root / "kind.txt").write_text("latent")
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "make.py").write_text(STAGE)
    ok(root, "git", "init", "-q")
    ok(root, "dvc", "init", "-q")
    ok(root, "dvc", "remote", "add", "-d", "shared", str(remote))
    ok(root, "dvc", "repro", "-q")
    ok(root, "git", "add", "-A")
    ok(root, "git", "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "stage s1")
    return root, remote


@pytest.mark.parametrize("target", [
    "data/raw/phantom_a", "data/raw", "data/interim/phantom_a/manifest.parquet", "data/windowed/phantom_a-lung",
    "data/quality/phantom_a.screen.json", "data/checkpoints/s1", "data/metrics/pretrain-s1.json", "data/models",
    "data/eval/s1.json", "params.yaml",
])
def test_everything_but_models_buffers_and_audit_reports_is_refused(tmp_path: Path, target: str):
    with pytest.raises(BoundaryError) as refused:
        check_target(tmp_path, Path(target))
    assert str(refused.value).startswith(f"{target}: ") and "\n" not in str(refused.value)


def test_private_roots_are_named_as_the_privacy_boundary(tmp_path: Path):
    for target in ("data/raw/x", "data/interim/x", "data/windowed/x-lung", "data/quality/x.passed.json"):
        with pytest.raises(BoundaryError, match="never leaves the site"):
            check_target(tmp_path, Path(target))


def test_an_image_buffer_needs_the_explicit_flag(tmp_path: Path):
    buffer = tmp_path / "data/buffers/s1"
    buffer.mkdir(parents=True)
    (buffer / "meta.json").write_text(json.dumps({"kind": "image", "keeps_raw_images": True}))
    with pytest.raises(BoundaryError, match="--allow-image-buffer"):
        check_target(tmp_path, Path("data/buffers/s1"))
    check_target(tmp_path, Path("data/buffers/s1"), allow_image_buffer=True)
    (buffer / "meta.json").write_text(json.dumps({"kind": "latent", "keeps_raw_images": False}))
    check_target(tmp_path, Path("data/buffers/s1"))


PASSED = '{"buffer": "s1", "passed": true, "reasons": []}'


def test_a_target_outside_the_project_or_a_missing_audit_is_refused(tmp_path: Path):
    (tmp_path / "data/buffers/s1").mkdir(parents=True)
    (tmp_path / "data/buffers/s1/meta.json").write_text('{"kind": "latent"}')
    with pytest.raises(BoundaryError, match="outside the project"):
        plan_push(tmp_path, stage_artifacts(_paths()), [tmp_path.parent / "elsewhere"])
    missing = r"^data/privacy/s1.json: missing; run `dvc repro audit@s1` first: a stage's model and buffer leave"
    with pytest.raises(BoundaryError, match=missing):
        plan_push(tmp_path, stage_artifacts(_paths()))
    (tmp_path / "data/privacy").mkdir(parents=True)
    (tmp_path / "data/privacy/s1.json").write_text("{")
    with pytest.raises(BoundaryError, match=r"^data/privacy/s1.json: unreadable \(.+\); re-run `dvc repro audit@s1`$"):
        plan_push(tmp_path, stage_artifacts(_paths()))
    (tmp_path / "data/privacy/s1.json").write_text("[]")  # read as the gate reads it: not a report
    with pytest.raises(BoundaryError, match=r"^data/privacy/s1.json: not an audit report"):
        plan_push(tmp_path, stage_artifacts(_paths()))
    (tmp_path / "data/privacy/s1.json").write_text('{"buffer": "s1", "audited": true}')
    with pytest.raises(BoundaryError, match=r"data/privacy/s1.gate.json: missing; run `dvc repro gate@s1`"):
        plan_push(tmp_path, stage_artifacts(_paths()))
    (tmp_path / "data/privacy/s1.gate.json").write_text(PASSED)
    plan = plan_push(tmp_path, stage_artifacts(_paths()))
    assert plan.dvc_targets == (Path("data/models/s1"), Path("data/buffers/s1"))
    # no clearance on disk (a fail-mode gate refused it): nothing claims one crosses
    assert plan.git_files == (Path("data/privacy/s1.json"), Path("data/privacy/s1.gate.json")) and plan.leaking == ()
    (tmp_path / "data/privacy/s1.cleared.json").write_text('{"buffer": "s1", "cleared": true}')
    assert Path("data/privacy/s1.cleared.json") in plan_push(tmp_path, stage_artifacts(_paths())).git_files


def failing_verdict() -> dict:
    """gate@s1's verdict on a leaking buffer: the real gate's check of leaking figures."""
    figures = {"gradient_ssim_p95": 0.993, "ridge_ssim_p95": 0.71, "baseline_ssim_p95": 0.66, "reid_auc": 0.98}
    return {"buffer": "s1", **check(figures, tiny_params()["privacy"]["gate"])}


def write_audit(root: Path, stage: str, verdict: dict | str) -> None:
    (root / "data/privacy").mkdir(parents=True, exist_ok=True)
    (root / f"data/privacy/{stage}.json").write_text(json.dumps({"buffer": stage, "audited": True}))
    text = verdict if isinstance(verdict, str) else json.dumps({**verdict, "buffer": stage})
    (root / f"data/privacy/{stage}.gate.json").write_text(text)


def test_a_buffer_that_failed_its_audit_leaves_only_with_the_flag(tmp_path: Path):
    (tmp_path / "data/buffers/s1").mkdir(parents=True)
    (tmp_path / "data/buffers/s1/meta.json").write_text('{"kind": "latent"}')
    verdict = failing_verdict()
    assert verdict["passed"] is False and verdict["mode"] == "warn"  # the local pipeline went on
    write_audit(tmp_path, "s1", verdict)
    with pytest.raises(BoundaryError) as refused:
        plan_push(tmp_path, stage_artifacts(_paths()))
    line = str(refused.value)
    assert line.startswith("data/privacy/s1.json: buffer s1 failed its privacy audit: gradient SSIM p95 0.993 ")
    assert "re-identification AUC 0.980" in line and "--allow-leaking-buffer" in line and "\n" not in line
    plan = plan_push(tmp_path, stage_artifacts(_paths()), allow_leaking_buffer=True)
    assert len(plan.leaking) == 1 and "gradient SSIM p95 0.993" in plan.leaking[0]
    write_audit(tmp_path, "s1", '{"buffer": "s1"}')  # no verdict is not a pass
    with pytest.raises(BoundaryError, match="not a privacy gate verdict"):
        plan_push(tmp_path, stage_artifacts(_paths()))


def test_an_extra_buffer_needs_its_own_passing_audit_and_takes_it_along(tmp_path: Path):
    for stage in ("s1", "s0"):
        (tmp_path / f"data/buffers/{stage}").mkdir(parents=True)
        (tmp_path / f"data/buffers/{stage}/meta.json").write_text('{"kind": "latent"}')
    write_audit(tmp_path, "s1", PASSED)
    with pytest.raises(BoundaryError, match=r"data/privacy/s0.json: missing; run `dvc repro audit@s0`"):
        plan_push(tmp_path, stage_artifacts(_paths()), [Path("data/buffers/s0")])
    write_audit(tmp_path, "s0", failing_verdict())
    with pytest.raises(BoundaryError, match="buffer s0 failed its privacy audit"):
        plan_push(tmp_path, stage_artifacts(_paths()), [Path("data/buffers/s0")])
    write_audit(tmp_path, "s0", '{"buffer": "s0", "passed": true, "reasons": []}')
    plan = plan_push(tmp_path, stage_artifacts(_paths()), [Path("data/buffers/s0")])
    assert Path("data/privacy/s0.json") in plan.git_files and Path("data/buffers/s0") in plan.dvc_targets
    assert Path("data/privacy/s0.gate.json") in plan.git_files


@pytest.mark.slow
def test_push_uploads_exactly_the_model_and_buffer_and_a_clone_pulls_only_those(project, tmp_path: Path):
    root, remote = project
    cache = root / ".dvc" / "cache"
    refused = one_error_line(run(root, "cssl", "site", "push", "--stage", "s1", WINDOWED))
    assert refused.startswith(f"error: {WINDOWED}: under data/windowed, which never leaves the site")
    assert not remote.exists() or not remote_objects(remote), "a refused push uploaded something"

    pushed = ok(root, "cssl", "site", "push", "--stage", "s1")
    assert "git add dvc.lock data/privacy/s1.json" in pushed.stdout
    allowed = out_objects(root, cache, "data/models/s1") | out_objects(root, cache, "data/buffers/s1")
    private = out_objects(root, cache, WINDOWED)
    assert remote_objects(remote) == allowed  # exactly: nothing upstream, no run cache
    assert not private & remote_objects(remote)

    clone = tmp_path / "site_b"
    ok(tmp_path, "git", "clone", "-q", str(root), str(clone))
    pulled = ok(clone, "cssl", "site", "pull", "--stage", "s1")
    assert "site pull s1" in pulled.stdout
    assert (clone / "data/models/s1/weights.bin").read_bytes() == (root / "data/models/s1/weights.bin").read_bytes()
    assert (clone / "data/buffers/s1/rows.bin").is_file() and not (clone / WINDOWED).exists()
    assert remote_objects(clone / ".dvc" / "cache") == allowed


@pytest.mark.slow
def test_an_image_buffer_is_refused_then_pushed_with_the_flag(project):
    root, remote = project
    (root / "kind.txt").write_text("image")
    ok(root, "dvc", "repro", "-q")
    line = one_error_line(run(root, "cssl", "site", "push", "--stage", "s1"))
    assert line.startswith("error: data/buffers/s1: an image replay buffer") and "--allow-image-buffer" in line
    assert not remote.exists() or not remote_objects(remote)
    ok(root, "cssl", "site", "push", "--stage", "s1", "--allow-image-buffer")
    assert out_objects(root, root / ".dvc/cache", "data/buffers/s1") <= remote_objects(remote)


@pytest.mark.slow
def test_a_leaking_buffer_is_refused_with_exit_2_and_nothing_uploaded_then_pushed_with_the_flag(project):
    root, remote = project
    write_audit(root, "s1", failing_verdict())  # what a warn-mode gate leaves
    done = run(root, "cssl", "site", "push", "--stage", "s1")
    line = one_error_line(done)
    assert line.startswith("error: data/privacy/s1.json: buffer s1 failed its privacy audit: gradient SSIM p95")
    assert "--allow-leaking-buffer" in line and not done.stdout.strip()
    assert not remote.exists() or not remote_objects(remote), "a refused push uploaded something"
    pushed = ok(root, "cssl", "site", "push", "--stage", "s1", "--allow-leaking-buffer")
    assert "warning: data/privacy/s1.json: buffer s1 failed its privacy audit: gradient SSIM p95 0.993" in pushed.stderr
    assert out_objects(root, root / ".dvc/cache", "data/buffers/s1") <= remote_objects(remote)


@pytest.mark.slow
def test_pull_without_the_other_sites_git_commit_says_git_pull_first(project, tmp_path: Path):
    root, _ = project
    (root / "data/privacy/s1.json").unlink()
    line = one_error_line(run(root, "cssl", "site", "pull", "--stage", "s1"))
    assert line.startswith("error: data/privacy/s1.json: missing; `git pull`")


def test_push_or_pull_without_a_configured_remote_is_one_line_not_zero_objects(tmp_path: Path):
    from dvc.repo import Repo

    from flows.site import check_remote

    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo, pytest.raises(BoundaryError, match=r"^no DVC remote is configured; add"):
        check_remote(repo, None)
    config = tmp_path / ".dvc" / "config"
    config.write_text(config.read_text() + "['remote \"shared\"']\n    url = /somewhere\n")
    with Repo(str(tmp_path)) as repo:
        with pytest.raises(BoundaryError, match=r"configured: shared; pass --remote NAME or make one the default"):
            check_remote(repo, None)
        with pytest.raises(BoundaryError, match=r"DVC remote 'other' is not configured \(configured: shared\)"):
            check_remote(repo, "other")
        assert check_remote(repo, "shared") == "shared"
    config.write_text(config.read_text().replace("[core]\n", "[core]\n    remote = shared\n"))
    with Repo(str(tmp_path)) as repo:
        assert check_remote(repo, None) == "shared"
