"""Ordered parallel map over a process pool, with a progress bar on stderr.

One pool serves both passes (headers, then series) so worker start-up is paid once. Results always come
back in input order whatever the completion order, which is what makes outputs independent of the
number of workers. `workers=1` runs in-process: no pickling, easy debugging and profiling.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tqdm import tqdm

from cssl_core.ingest.quiet import silence_worker

T = TypeVar("T")
R = TypeVar("R")
# Imported once by the fork server, so each worker starts in milliseconds. "__main__" too: otherwise every
# worker re-imports the caller's main script (multiprocessing does so for spawned/forkserver children).
PRELOAD = ["__main__", "cssl_core.ingest.header", "cssl_core.ingest.series"]


class _Bar(tqdm):
    """tqdm without its monitor thread: a helper thread would needlessly rule out `fork` below."""

    monitor_interval = 0


def weighted_bar(
    count: int, weights: Sequence[int] | None, desc: str, unit: str, shown: bool
) -> tuple[list[int], _Bar]:
    """Each item's weight (1 when none are given) and a progress bar over their sum, for every runner's `map`."""
    weights = list(weights) if weights is not None else [1] * count
    return weights, _Bar(total=sum(weights), desc=desc, unit=unit, file=sys.stderr, disable=not shown, leave=False)


def pool_context(start_method: str | None = None) -> multiprocessing.context.BaseContext:
    """How workers are started.

    `fork` starts workers in milliseconds, but forking a process in which other Python threads run
    (a Prefect task runner, MLflow's system-metrics thread) can copy a lock another thread holds and
    deadlock the child. So: fork only when this process runs no other thread, otherwise `forkserver`
    (a clean server process preloaded with the worker modules, ~0.3 s once per run); `spawn` where
    neither exists.
    """
    methods = multiprocessing.get_all_start_methods()
    if start_method is None:
        if "fork" in methods and threading.active_count() == 1:
            start_method = "fork"
        else:
            start_method = "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _ready() -> None:
    """A worker's first task: returns once the pool can run work."""


class _PoolStart:
    """Starts a pool's workers in a thread and says when they run.

    Workers from a fork server (the start method when this process runs other threads) wait ~0.3-1 s for the
    server to import the worker modules, and the first `submit` blocks for all of it: on the bench's 2,000
    slices that cost the 2-worker ingest a third of its speed-up. Started here, the wait overlaps work that the
    calling process does itself meanwhile (TaskRunner.map takes items until `ready` is set).
    """

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(pool,), name="pool-start", daemon=True)
        self._thread.start()

    def _start(self, pool: ProcessPoolExecutor) -> None:
        try:
            pool.submit(_ready).result()
        except BaseException as error:  # re-raised in the caller by join()
            self._error = error
        finally:
            self.ready.set()

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class TaskRunner(AbstractContextManager):
    """Runs `fn` over items in `workers` processes (or in-process for 1), preserving input order."""

    def __init__(self, workers: int = 1, progress: bool = True, start_method: str | None = None) -> None:
        self.workers = max(1, int(workers))
        self.progress = progress
        self.start_method = start_method
        self._pool: ProcessPoolExecutor | None = None
        self._starting: _PoolStart | None = None

    def __enter__(self) -> TaskRunner:
        if self.workers > 1:
            context = pool_context(self.start_method)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=silence_worker)
            if context.get_start_method() != "fork":
                self._starting = _PoolStart(self._pool)
        return self

    def __exit__(self, *exc: object) -> None:
        starting, self._starting = self._starting, None
        try:
            if starting is not None:
                starting.join()
        except BaseException:
            if exc[0] is None:  # a failed start is the error only when nothing else went wrong first
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        weights: Sequence[int] | None = None,
        desc: str = "",
        unit: str = "it",
    ) -> list[R]:
        """fn(item) for every item, in item order; the bar advances by each item's weight."""
        weights, bar = weighted_bar(len(items), weights, desc, unit, self.progress)
        with bar:
            if self._pool is None:
                results = []
                for item, weight in zip(items, weights, strict=True):
                    results.append(fn(item))
                    bar.update(weight)
                return results
            return self._map_pool(fn, items, weights, bar)

    def _map_pool(self, fn: Callable, items: Sequence[Any], weights: list[int], bar: _Bar) -> list:
        assert self._pool is not None
        # Largest first, so one big series submitted last cannot leave the other workers idle.
        order = sorted(range(len(items)), key=lambda i: -weights[i])
        results: list[Any] = [None] * len(items)
        if self._starting is not None:
            # while the workers start, this process takes the smallest items, which the workers would reach last
            while order and not self._starting.ready.is_set():
                index = order.pop()
                results[index] = fn(items[index])
                bar.update(weights[index])
            if not order:
                return results
            self._starting.join()
            self._starting = None
        futures: dict[Future, int] = {self._pool.submit(fn, items[i]): i for i in order}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            bar.update(weights[index])
        return results
