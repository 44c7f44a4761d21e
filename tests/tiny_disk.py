"""A real full disk for tests: a small tmpfs mounted in a private mount namespace.

Why not mock `write`: the bug this guards against lives below Python (niftilib inside SimpleITK prints a
short write on stderr and returns normally, pyarrow raises from C++), so only a device that really runs
out of space shows it. The namespace keeps the mount private to one subprocess (no stale mount if a test
dies, nothing visible to other processes) and needs root, or unprivileged user namespaces
(`unshare --map-root-user`), both available in this project's containers.

The tmpfs vanishes with the subprocess, so the script run there reports what it sees (a JSON line made
by `listing_snippet`) and the test asserts on that.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _unshare() -> list[str]:
    return ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]


def run_on_tiny_disk(mount_point: Path, size: str, script: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run bash `script` where `mount_point` (created if missing) is a fresh tmpfs of `size` (e.g. "1m").

    The script sees $DISK (the mount point), $PY (this interpreter) and the repository on PYTHONPATH.
    """
    mount_point.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISK": str(mount_point), "PY": PYTHON}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    inner = f'set -u; mount -t tmpfs -o size={size} tmpfs "$DISK" || exit 97; {script}'
    result = subprocess.run(
        [*_unshare(), "bash", "-c", inner], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode != 97, f"could not mount a tmpfs in a private namespace: {result.stderr}"
    return result


LISTING = """
import hashlib, json, os, sys
root = sys.argv[1]
found = {}
for folder, _, names in os.walk(root):
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as fp:
            found[os.path.relpath(path, root)] = [os.path.getsize(path), hashlib.sha256(fp.read()).hexdigest()]
print("LISTING " + json.dumps(found, sort_keys=True))
"""


def listing_snippet(folder: str = "$DISK") -> str:
    """Bash that prints `LISTING {relative path: [size, sha256]}` for every file under `folder`."""
    return f'"$PY" -c {shlex.quote(LISTING)} "{folder}"'


def listings(stdout: str) -> list[dict[str, list]]:
    """Every listing the script printed, in order."""
    return [json.loads(line[len("LISTING ") :]) for line in stdout.splitlines() if line.startswith("LISTING ")]
