"""One process stays today's loop: the ssl.distributed default is the absent block, and a run under a
one-process torchrun environment (WORLD_SIZE=1) is bit-identical to a plain one, with the same checkpoint key."""

from __future__ import annotations

import pytest
import torch

from cssl_core.config import ProjectConfig
from cssl_core.distributed import active
from tests.cssl_core.train.fixtures import write_windowed
from tests.cssl_core.train.resume_worker import configuration_dir, final_weights, run_stage
from tests.helpers import tiny_params


def test_default_block_is_the_absent_block():
    params = tiny_params()
    params["ssl"].pop("distributed", None)
    absent = ProjectConfig.from_params(params).ssl.distributed
    params["ssl"]["distributed"] = {"nproc_per_node": 1, "nnodes": 1, "rdzv_endpoint": None, "backend": "auto"}
    assert ProjectConfig.from_params(params).ssl.distributed == absent and not absent.enabled


@pytest.mark.slow  # two 3-epoch runs: ~8 s on a loaded 2-core machine
def test_world_size_one_is_bit_identical_to_a_plain_run(tmp_path, monkeypatch):
    data = write_windowed(tmp_path / "synthetic-lung", n=24, size=32)
    plain = run_stage(data, tmp_path / "plain", workers=0)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    single = run_stage(data, tmp_path / "single", workers=0)
    assert not active()  # no process group was created for one process
    assert configuration_dir(tmp_path / "plain").name == configuration_dir(tmp_path / "single").name
    expected, actual = final_weights(tmp_path / "plain"), final_weights(tmp_path / "single")
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert [h["loss/total"] for h in plain.history] == [h["loss/total"] for h in single.history]
