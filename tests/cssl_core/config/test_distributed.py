"""`ssl.distributed`: defaults to one process (the loop never sees a process group), and each wrong value is one
line naming the key."""

from __future__ import annotations

import pytest

from cssl_core.config import ConfigError, ProjectConfig
from tests.helpers import tiny_params


def _config(**distributed: object) -> ProjectConfig:
    params = tiny_params()
    params["ssl"]["batch_size"] = 8
    if distributed:
        params["ssl"]["distributed"] = distributed
    return ProjectConfig.from_params(params)


def test_absent_block_is_one_process_on_one_node():
    dist = _config().ssl.distributed
    assert (dist.nproc_per_node, dist.nnodes, dist.rdzv_endpoint, dist.backend) == (1, 1, None, "auto")
    assert not dist.enabled and dist.world_size == 1


def test_two_processes_are_enabled():
    dist = _config(nproc_per_node=2, backend="gloo").ssl.distributed
    assert dist.enabled and dist.world_size == 2 and dist.backend == "gloo"


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"nproc_per_node": 0}, "ssl.distributed.nproc_per_node"),
        ({"nproc_per_node": "2"}, "ssl.distributed.nproc_per_node"),
        ({"nnodes": 2}, "ssl.distributed.rdzv_endpoint"),  # several nodes must be told where to meet
        ({"rdzv_endpoint": "127.0.0.1"}, "ssl.distributed.rdzv_endpoint"),
        ({"backend": "mpi"}, "ssl.distributed.backend"),
        ({"nproc": 2}, "ssl.distributed"),
        ({"nproc_per_node": 3}, "ssl.batch_size"),  # 8 does not split over 3 processes
    ],
)
def test_bad_values_name_their_key(block, key):
    with pytest.raises(ConfigError) as error:
        _config(**block)
    message = str(error.value)
    assert key in message and "\n" not in message
