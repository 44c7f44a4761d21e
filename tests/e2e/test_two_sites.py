"""Two sites, one continual schedule, no image crossing: site A trains s1, site B trains s2, over a shared remote.

Each site is a clone of one tiny project (shared git remote: a bare repo) with its own key secret and its own
DICOM cohort (the demo generator): A holds phantom_a (stage s1), B phantom_b (stage s2); both generate the
privacy audit's attacker cohort themselves. DVC's remote is an S3 bucket on a real S3-API server. A runs s1,
`cssl site push --stage s1`, commits dvc.lock and the audit report; B pulls git, `cssl site pull --stage s1`,
runs its own cohort's stages and s2 with `--single-item`, pushes back. Then the bucket, both caches and the
git history are read back: objects are md5s, mapped to paths through each site's dvc.lock and .dir manifests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.helpers import make_tiny_project, tiny_params
from tests.servers import CREDENTIALS, REGION, S3Server, server_env

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PRIVATE = ("data/raw/", "data/interim/", "data/windowed/", "data/quality/")
SHARED = ("data/models/s1", "data/buffers/s1", "data/models/s2", "data/buffers/s2")  # what may cross
COMMIT = ["git", "-c", "user.name=site", "-c", "user.email=site@example.org", "commit", "-qm"]


def two_site_params() -> dict:
    """tests/helpers.py's tiny project, cheaper where it does not matter here: no GX HTML pages, one attacker."""
    params = tiny_params()
    params["quality"]["html_report"] = False
    params["ingest"]["volume_format"] = "nii"
    params["privacy"]["attack"]["attackers"] = ["ridge"]
    return params


def site_env(root: Path, secret: Path) -> dict[str, str]:
    """A site's environment: its own key secret, its own code copy, S3 credentials, no AWS config files."""
    env = server_env(DVC_NO_ANALYTICS="1", CSSL_SECRET_FILE=str(secret), PYTHONPATH=str(root), **REGION,
                     **CREDENTIALS)
    env.update(AWS_CONFIG_FILE=str(secret.parent / "none"), AWS_SHARED_CREDENTIALS_FILE=str(secret.parent / "none"))
    for name in ("MLFLOW_TRACKING_URI", "CSSL_KEY_SECRET", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    return env


def run(root: Path, env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    command = {"dvc": [sys.executable, "-m", "dvc"], "cssl": [str(BIN / "cssl")]}.get(args[0], [args[0]])
    done = subprocess.run([*command, *args[1:]], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert done.returncode == 0, f"{' '.join(args)} in {root.name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def cache_objects(root: Path) -> set[str]:
    """md5 of every object in a site's DVC cache (files/md5/ab/cdef... -> abcdef...)."""
    base = root / ".dvc" / "cache" / "files" / "md5"
    return {p.parent.name + p.name for p in base.rglob("*") if p.is_file()} if base.exists() else set()


def remote_objects(s3: S3Server, prefix: str) -> set[str]:
    return {"".join(key.split("/")[-2:]) for key in s3.keys(f"{prefix}/files/md5/")}


def lock_objects(root: Path, where: tuple[str, ...], present_only: bool = False) -> dict[str, str]:
    """md5 -> path of the dvc.lock outputs under `where` (a directory's files through its .dir manifest)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    found: dict[str, str] = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            path, md5 = out["path"], out.get("md5")
            if not md5 or not path.startswith(where) or (present_only and not (root / path).exists()):
                continue
            found[md5] = path
            if md5.endswith(".dir"):
                manifest = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
                for entry in json.loads(manifest.read_text()):
                    found[entry["md5"]] = f"{path}/{entry['relpath']}"
    return found


def lock_md5(root: Path, stage: str, path: str, section: str = "outs") -> str:
    entries = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage][section]
    return next(e["md5"] for e in entries if e["path"] == path)


def decided(stage: str) -> list[str]:
    """What git carries for a stage: the audit's figures, the gate's verdict, the clearance."""
    return [f"data/privacy/{stage}{suffix}" for suffix in (".json", ".gate.json", ".cleared.json")]


def push_stage(root: Path, env: dict[str, str], stage: str, s3: S3Server, prefix: str) -> None:
    """`cssl site push --stage <stage>` as an operator must run it: a buffer that failed its audit (the tiny
    pipeline's gate only warns) is refused first, with nothing new uploaded, and crosses only with the flag."""
    if json.loads((root / f"data/privacy/{stage}.gate.json").read_text())["passed"]:
        run(root, env, "cssl", "site", "push", "--stage", stage)
        return
    before = remote_objects(s3, prefix)
    refused = run(root, env, "cssl", "site", "push", "--stage", stage, ok=False)
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"error: data/privacy/{stage}.json: buffer {stage} failed its privacy audit: ")
    assert remote_objects(s3, prefix) == before, "the refused push uploaded something"
    pushed = run(root, env, "cssl", "site", "push", "--stage", stage, "--allow-leaking-buffer")
    assert f"buffer {stage} failed its privacy audit" in pushed.stderr


def test_two_sites_share_models_and_buffers_but_no_image(s3_server: S3Server, tmp_path: Path):
    started = time.perf_counter()
    prefix = f"two-sites-{uuid.uuid4().hex[:8]}"
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    site_a = make_tiny_project(tmp_path / "site_a", two_site_params())
    env_a = site_env(site_a, tmp_path / "secret_a.key")
    run(site_a, env_a, "dvc", "remote", "add", "-d", "shared", f"s3://{s3_server.bucket}/{prefix}")
    run(site_a, env_a, "dvc", "remote", "modify", "shared", "endpointurl", s3_server.endpoint)
    run(site_a, env_a, "git", "add", "-A")
    run(site_a, env_a, *COMMIT, "the project and the shared remote")
    run(site_a, env_a, "git", "push", "-q", str(origin), "HEAD:refs/heads/main")

    # --- site A: stage s1 on its own cohort, then exactly s1's model and buffer to the remote
    run(site_a, env_a, "dvc", "repro", "gate@s1")
    refused = run(site_a, env_a, "cssl", "site", "push", "--stage", "s1", "data/windowed/phantom_a-mediastinal",
                  ok=False)
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: data/windowed/phantom_a-mediastinal: under data/windowed, which never leaves")
    assert not remote_objects(s3_server, prefix), "the refused push uploaded something"
    push_stage(site_a, env_a, "s1", s3_server, prefix)
    run(site_a, env_a, "git", "add", "dvc.lock", *decided("s1"))
    run(site_a, env_a, *COMMIT, "stage s1 (site A)")
    run(site_a, env_a, "git", "push", "-q", str(origin), "HEAD:refs/heads/main")
    private_a = lock_objects(site_a, PRIVATE)
    a_seconds = time.perf_counter() - started

    # --- site B: its own secret and cohort; s1 only through the remote
    site_b = tmp_path / "site_b"
    env_b = site_env(site_b, tmp_path / "secret_b.key")
    run(tmp_path, env_b, "git", "clone", "-q", "-b", "main", str(origin), str(site_b))
    run(site_b, env_b, "cssl", "site", "pull", "--stage", "s1")
    assert (site_b / "data/models/s1").is_dir() and (site_b / "data/buffers/s1/meta.json").is_file()
    run(site_b, env_b, "dvc", "repro", "quality@phantom_b-lung", "window@phantom_c-lung")
    run(site_b, env_b, "dvc", "repro", "--single-item", "pretrain@s2", "export@s2", "audit@s2", "gate@s2")  # in order
    push_stage(site_b, env_b, "s2", s3_server, prefix)
    run(site_b, env_b, "git", "add", "dvc.lock", *decided("s2"))
    run(site_b, env_b, *COMMIT, "stage s2 (site B)")
    run(site_b, env_b, "git", "push", "-q", "origin", "HEAD:refs/heads/main")
    private_b = lock_objects(site_b, PRIVATE, present_only=True)
    status = run(site_b, env_b, "dvc", "status", "pretrain@s2", "export@s2", "audit@s2", "gate@s2")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout  # s1 from the remote + B's own data
    assert not (site_b / "data/raw/phantom_a").exists()
    assert not (site_b / "data/windowed/phantom_a-mediastinal").exists()

    # --- A takes s2 back
    run(site_a, env_a, "git", "pull", "-q", "--no-rebase", str(origin), "main")
    run(site_a, env_a, "cssl", "site", "pull", "--stage", "s2")

    # --- what crossed: the bucket holds exactly the models and buffers of s1 and s2
    shared = {**lock_objects(site_a, SHARED, present_only=True), **lock_objects(site_b, SHARED, present_only=True)}
    remote = remote_objects(s3_server, prefix)
    assert remote == set(shared), f"unexpected in the bucket: {sorted(remote - set(shared))}"
    assert {p.split("/")[2] for p in shared.values()} >= {"s1", "s2"}
    # identical bytes both sites made themselves (the seeded attacker cohort's DICOM) are not a crossing
    only_a, only_b = set(private_a) - set(private_b), set(private_b) - set(private_a)
    assert any(private_a[m].startswith("data/raw/phantom_a/") for m in only_a)
    assert any(private_a[m].startswith("data/windowed/phantom_a-") for m in only_a)
    assert any(private_b[m].startswith("data/interim/phantom_b/") for m in only_b)
    assert not (set(private_a) | set(private_b)) & remote, "private objects in the bucket"
    leaked_to_b = sorted(private_a[m] for m in only_a & cache_objects(site_b))
    leaked_to_a = sorted(private_b[m] for m in only_b & cache_objects(site_a))
    assert not leaked_to_b and not leaked_to_a, (leaked_to_b, leaked_to_a)
    tracked = run(site_a, env_a, "git", "ls-tree", "-r", "--name-only", "HEAD").stdout.split()
    assert not [p for p in tracked if p.startswith(PRIVATE)], "private files in git"

    # --- reproducible from the remote alone: a fresh clone gets B's s2 exactly as dvc.lock names it
    fresh = tmp_path / "fresh"
    env_f = site_env(fresh, tmp_path / "secret_f.key")
    run(tmp_path, env_f, "git", "clone", "-q", "-b", "main", str(origin), str(fresh))
    run(fresh, env_f, "cssl", "site", "pull", "--stage", "s2")
    run(fresh, env_f, "cssl", "site", "pull", "--stage", "s1")
    for stage, out in (("pretrain@s2", "data/models/s2"), ("export@s2", "data/buffers/s2")):
        files = sorted(p.relative_to(fresh / out) for p in (fresh / out).rglob("*") if p.is_file())
        assert files and all((fresh / out / f).read_bytes() == (site_b / out / f).read_bytes() for f in files)
        assert lock_md5(fresh, stage, out) == lock_md5(site_b, stage, out)
    # B trained on exactly the s1 A pushed
    assert lock_md5(fresh, "pretrain@s2", "data/models/s1", "deps") == lock_md5(site_a, "pretrain@s1", "data/models/s1")
    cloud = run(fresh, env_f, "dvc", "status", "--cloud", "data/models/s2", "data/buffers/s2", "data/models/s1",
                "data/buffers/s1")
    assert "in sync" in cloud.stdout, cloud.stdout
    assert cache_objects(fresh) == set(shared)
    print(json.dumps({"site_a_s": round(a_seconds, 1), "total_s": round(time.perf_counter() - started, 1),
                      "remote_objects": len(remote)}))
