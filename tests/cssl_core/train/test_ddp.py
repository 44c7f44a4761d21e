"""Data-parallel training under real torchrun processes (gloo on CPU): two ranks with half the batch each train
the same run as one process with the whole batch, and a killed two-process run resumes to where an
uninterrupted one ends.

Tolerance of the loss-curve comparison: the two runs see the same samples, augmentations, masks and replay rows
at every step (EpochSampler.shard, MaskedAutoencoder mask_shard, strided replay indices), so the only
difference is float32 summation order (a batch mean of 8 vs. the mean of two means of 4, an all-reduced
gradient, a gathered BKE/WKD batch in another row order). One step of that is ~1e-7 relative; 3 epochs x 6 steps
of AdamW let it grow but not to 1e-4 (measured: finetune 0 (bit-identical at 1 thread), latent_replay 6.8e-8 on
the total, 3.0e-7 on WKD), while per-rank instead of global BKE/WKD statistics (gather_rows made the identity)
moved the total by 2.9e-3 and the WKD term by 4.2e-2: 30x and 400x the tolerance.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cssl_core.train.ddp_worker import EPOCHS
from tests.cssl_core.train.fixtures import write_windowed

REPO = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("ddp_worker.py")
N_SLICES = 48
TOLERANCE = 1e-4  # max relative difference of per-epoch mean losses, see the module docstring

pytestmark = pytest.mark.slow


def _state(pid: int) -> str:
    """The state letter of a Linux process (Z: a zombie waiting for its parent to reap it)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _ended(pid: int, seconds: float = 20.0) -> bool:
    """Whether the process is gone or a zombie within `seconds`: a SIGKILLed process still shows state R while the
    kernel tears it down (its memory, its sockets), which takes a moment longer on a loaded machine."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if "Z" in _state(pid):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(data: Path, checkpoints: Path, out: Path, nproc: int, *extra: str) -> list[str]:
    tail = [str(WORKER), str(data), str(checkpoints), str(out), "--threads", "1", *extra]
    if nproc == 1:
        return [sys.executable, *tail]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc)]
    launcher += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--max-restarts", "0"]
    return [*launcher, *tail]


def run(data: Path, root: Path, nproc: int, *extra: str) -> dict:
    out = root / "out.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command(data, root / "checkpoints", out, nproc, *extra), cwd=REPO, env=env, capture_output=True,
        text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def losses(result: dict, term: str = "loss/total") -> list[float]:
    return [epoch[term] for epoch in result["history"]]


def max_relative(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_windowed(tmp_path / "synthetic-lung", n=N_SLICES, size=32)


@pytest.mark.parametrize("strategy", ["finetune", "latent_replay"])
def test_two_processes_with_half_batches_follow_the_one_process_curve(tmp_path, data, strategy):
    one = run(data, tmp_path / "one", 1, "--strategy", strategy)
    two = run(data, tmp_path / "two", 2, "--strategy", strategy)
    assert len(losses(one)) == len(losses(two)) == EPOCHS
    difference = max_relative(losses(two), losses(one))
    print(f"{strategy}: max relative loss difference 1 vs 2 processes = {difference:.3g}")
    assert difference < TOLERANCE, (losses(one), losses(two))
    if strategy == "latent_replay":  # the global-batch term itself, not only the total
        wkd = max_relative(losses(two, "loss/wkd"), losses(one, "loss/wkd"))
        assert wkd < TOLERANCE, (losses(one, "loss/wkd"), losses(two, "loss/wkd"))
        assert min(losses(one, "loss/wkd")) > 0
    # rank 0 alone wrote: one configuration directory, whose key records the two processes
    (directory,) = [p for p in (tmp_path / "two" / "checkpoints").iterdir() if p.is_dir()]
    saved = torch.load(directory / "last.pt", weights_only=True)
    assert saved["fingerprint"]["world_size"] == 2 and saved["epoch"] == EPOCHS
    first = torch.load(next((tmp_path / "one" / "checkpoints").iterdir()) / "last.pt", weights_only=True)
    assert "world_size" not in first["fingerprint"]  # one process: the key it always had


def test_torchrun_killed_mid_epoch_resumes_to_the_uninterrupted_end(tmp_path, data):
    reference = run(data, tmp_path / "uninterrupted", 2)
    killed, marker = tmp_path / "killed", tmp_path / "stall.marker"
    steps = N_SLICES // 8
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    stalling = command(data, killed / "checkpoints", killed / "out.json", 2, "--stall-at", str(steps + 3))
    stalling += ["--marker", str(marker)]
    killed.mkdir()
    process = subprocess.Popen(stalling, cwd=REPO, env=env, start_new_session=True, stderr=subprocess.PIPE)
    rank_markers = [marker.with_suffix(".0"), marker.with_suffix(".1")]

    def kill_all() -> None:
        # torchrun starts every rank in a session of its own: its process group does not reach them, their pids do
        for path in rank_markers:
            if path.exists() and path.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(path.read_text()), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    try:
        deadline = time.monotonic() + 120
        while not all(path.exists() and path.read_text().strip() for path in rank_markers):
            if process.poll() is not None:
                pytest.fail(f"torchrun exited early ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the ranks never reached epoch 2")
            time.sleep(0.05)
    finally:
        kill_all()  # both ranks, then torchrun and its session
        process.stderr.close()
    for path in rank_markers:  # no rank outlives the test
        assert _ended(int(path.read_text()))
    (directory,) = [p for p in (killed / "checkpoints").iterdir() if p.is_dir()]
    assert torch.load(directory / "last.pt", weights_only=True)["epoch"] == 1  # epoch 2 was in flight

    resumed = run(data, killed, 2)
    assert losses(resumed) == losses(reference)  # same processes, same reduction order: bit for bit
    expected = torch.load(reference["checkpoint"], weights_only=True)["model"]
    actual = torch.load(resumed["checkpoint"], weights_only=True)["model"]
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not different, different
