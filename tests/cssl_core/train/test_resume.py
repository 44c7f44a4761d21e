"""A stage SIGKILLed in the middle of an epoch and resumed ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cssl_core.train import load_latest
from tests.cssl_core.train.fixtures import write_windowed
from tests.cssl_core.train.resume_worker import BATCH, EPOCHS, configuration_dir, final_weights, run_stage

REPO = Path(__file__).resolve().parents[3]
N_SLICES = 48
STEPS = N_SLICES // BATCH


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, workers):
    data = write_windowed(tmp_path / "synthetic-lung", n=N_SLICES, size=32)
    reference = run_stage(data, tmp_path / "uninterrupted", workers)
    assert reference.epochs_run == EPOCHS and reference.resumed_from is None

    killed, marker = tmp_path / "killed", tmp_path / "epoch2.marker"
    stall_at = STEPS + 3  # third batch of the second epoch: two optimiser steps of it exist only in memory
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(Path(__file__).with_name("resume_worker.py")), str(data), str(killed)]
    command += ["--workers", str(workers), "--threads", str(torch.get_num_threads())]
    command += ["--stall-at", str(stall_at), "--marker", str(marker)]
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"worker exited early ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("worker never reached epoch 2")
            time.sleep(0.05)
        assert (configuration_dir(killed) / "last.pt").is_file()
        os.killpg(process.pid, signal.SIGKILL)  # the worker and its loader workers: its own session
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert load_latest(configuration_dir(killed))["epoch"] == 1  # epoch 2 was in flight, not saved

    resumed = run_stage(data, killed, workers)
    assert resumed.resumed_from == 1 and resumed.epochs_run == EPOCHS - 1
    assert resumed.global_step == reference.global_step == EPOCHS * STEPS
    expected, actual = final_weights(tmp_path / "uninterrupted"), final_weights(killed)
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not different, different
    assert [h["loss/total"] for h in resumed.history] == [h["loss/total"] for h in reference.history]
