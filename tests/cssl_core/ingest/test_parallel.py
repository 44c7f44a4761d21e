"""TaskRunner: results in input order, and a fork-server pool's start-up spent on work, not waiting."""

from __future__ import annotations

import os
import threading
import time

from cssl_core.ingest.parallel import TaskRunner


def _slow_pid(item: int) -> tuple[int, int]:
    time.sleep(0.02)
    return item, os.getpid()


def test_while_a_fork_server_starts_the_caller_takes_the_smallest_items():
    """Workers from a fork server wait for it to import their modules (the first submit blocked for all of it,
    which cost the 2-worker ingest a third of its speed-up). Meanwhile the caller runs the items the workers
    would reach last (the smallest, as the pool goes largest first), then the pool takes the rest."""
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)  # another thread alive: no plain fork
    helper.start()
    items = list(range(300))
    weights = [1000 - i for i in items]  # item 299 is the smallest
    try:
        with TaskRunner(2, progress=False) as runner:
            assert runner._pool is not None and runner._pool._mp_context.get_start_method() == "forkserver"
            results = runner.map(_slow_pid, items, weights=weights)
            again = runner.map(_slow_pid, items[:20])  # a warm pool: nothing is taken by the caller
    finally:
        stop.set()
        helper.join()
    assert [item for item, _ in results] == items  # input order, whoever ran what
    by_caller = [item for item, pid in results if pid == os.getpid()]
    assert by_caller, "the caller waited for the fork server instead of working"
    assert len(by_caller) < len(items), "the pool never took over"
    assert by_caller == list(range(items[-1] - len(by_caller) + 1, items[-1] + 1))  # the smallest, from the tail
    assert all(pid != os.getpid() for _, pid in again)


def test_a_forked_pool_leaves_every_item_to_the_workers():
    """fork starts workers in milliseconds: the caller only collects."""
    with TaskRunner(2, progress=False, start_method="fork") as runner:
        results = runner.map(_slow_pid, list(range(10)))
    assert [item for item, _ in results] == list(range(10))
    assert all(pid != os.getpid() for _, pid in results)
