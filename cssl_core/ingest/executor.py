"""Where the header and series passes run: the process pool (`processes`) or a Dask cluster.

`ingest.executor` (and `cssl ingest --executor`) is one of
- `processes`: today's pool of `workers` processes on this machine (cssl_core/ingest/parallel.py);
- `dask`: a `distributed.LocalCluster` started for the run on 127.0.0.1, `workers` single-threaded worker
  processes (Dask's nannies restart a worker that dies);
- `dask://host:port`: an existing scheduler (`dask scheduler` + `dask worker`s). Its workers must import this
  project (same code on PYTHONPATH) and see the input and output folders at the same absolute paths (a shared
  file system), and the task payloads carry the site's key secret: keep that cluster on a trusted network.

Why Dask's own machinery and not ours: `client.submit(..., retries=)` re-runs a series whose task raised,
and the scheduler re-runs a task whose worker died (up to `distributed.scheduler.allowed-failures` deaths).
A re-run is safe because a series writes only its own files, each atomically (cssl_core/atomic_io.py), into
the run's staging folder; what a killed attempt leaves is at most a hidden temporary file, which
`ingest_directory` removes before it commits. Results come back in input order, as with the pool, so the
outputs are byte-identical whichever executor ran them.

Dask is imported only when a Dask executor is chosen: the `processes` path never loads it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from cssl_core.ingest.errors import IngestInputError
from cssl_core.ingest.parallel import TaskRunner, weighted_bar
from cssl_core.ingest.quiet import silence_worker

T = TypeVar("T")
R = TypeVar("R")

PROCESSES = "processes"
DASK = "dask"
_ADDRESS = re.compile(r"^dask://(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})$")
RETRIES = 2  # re-runs of a series whose task raised (a worker's death is retried by the scheduler itself)
CONNECT_TIMEOUT_S = 10
# TEST-ONLY hook (tests/cssl_core/ingest/test_dask_executor.py): a file path. The first series task that manages
# to create this file kills its own worker process half-way through writing its volume, as a crash or an
# out-of-memory kill would. Never set it outside tests.
KILL_ONCE_ENV = "CSSL_TEST_KILL_WORKER_ONCE"


def scheduler_address(executor: str, option: str = "--executor") -> str | None:
    """None for `processes` and `dask` (local), else the `tcp://host:port` of `dask://host:port`.

    Raises ValueError (one line naming `option`) for anything else.
    """
    if executor in (PROCESSES, DASK):
        return None
    match = _ADDRESS.match(executor)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(
            f"{option} must be processes, dask or dask://host:port (an existing Dask scheduler), got {executor!r}"
        )
    return f"tcp://{match['host']}:{int(match['port'])}"


def make_runner(executor: str, workers: int = 1, progress: bool = True) -> TaskRunner | DaskRunner:
    """The runner `ingest_directory` maps its passes with (both give results in input order)."""
    if executor == PROCESSES:
        return TaskRunner(workers, progress)
    return DaskRunner(scheduler_address(executor), workers, progress)


def _call(fn: Callable[[T], R], item: T) -> R:
    """What a Dask worker runs: keep third-party chatter quiet (as the pool's initializer does), then fn."""
    silence_worker()
    if os.environ.get(KILL_ONCE_ENV):
        _maybe_die_mid_write(item)
    return fn(item)


def _maybe_die_mid_write(item: Any) -> None:
    """TEST-ONLY (see KILL_ONCE_ENV): arm a kill that fires when this series writes its volume.

    The volume's temporary file gets half its bytes and is fsync'ed, then the process exits at once, so the
    run faces what a real crash leaves: a dead worker and a partial hidden file in the staging folder.
    """
    from cssl_core import atomic_io
    from cssl_core.ingest.records import SeriesTask

    if not isinstance(item, SeriesTask):
        return
    try:
        fd = os.open(os.environ[KILL_ONCE_ENV], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # the kill has happened already: this is the retry (or another series)
    os.write(fd, f"{os.getpid()} {item.series_key}\n".encode())
    os.close(fd)

    def write_half_then_die(path: Any, data: Any, **_: Any) -> None:
        temp = atomic_io.temp_sibling(path)
        with open(temp, "wb") as handle:
            handle.write(bytes(data)[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        os._exit(1)

    atomic_io.write_bytes = write_half_then_die


def caller_environ() -> dict[str, str | None]:
    """This process's values of the variables a Dask nanny sets before it spawns a worker (None: unset).

    The nanny sets them (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, ... from `distributed.nanny.pre-spawn-environ`) in
    the *calling* process's os.environ and leaves them there: every process started later from the caller would
    then run torch on one thread (slower, and its sums in another order than a run with the machine's threads).
    """
    import dask

    keys = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    return {key: os.environ.get(key) for key in keys}


def restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class DaskRunner(AbstractContextManager):
    """Runs `fn` over items as Dask tasks (client.submit + as_completed), preserving input order.

    With no `address` a LocalCluster of `workers` single-threaded processes is started on 127.0.0.1 for the
    run and closed after it; with an address the runner connects to that scheduler and leaves it running.
    """

    absolute_paths = True  # workers may run elsewhere (another cwd, another machine): tasks get absolute paths

    def __init__(self, address: str | None, workers: int = 1, progress: bool = True) -> None:
        self.address = address
        self.workers = max(1, int(workers))
        self.progress = progress
        self._cluster: Any = None
        self._client: Any = None
        self._environ: dict[str, str | None] = {}

    def __enter__(self) -> DaskRunner:
        from distributed import Client, LocalCluster

        if self.address is None:
            self._environ = caller_environ()
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self._client = Client(self._cluster)
            restore_environ(self._environ)
        else:
            try:
                self._client = Client(self.address, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise IngestInputError(
                    f"cannot reach the Dask scheduler at {self.address} (ingest.executor / --executor): start it "
                    f"(`dask scheduler`, `dask worker`) or use executor dask or processes ({type(exc).__name__})"
                ) from None
            self.workers = max(1, sum(self._client.nthreads().values()))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
            restore_environ(self._environ)  # a worker restarted mid-run set them again

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
        from distributed import as_completed

        assert self._client is not None, "use DaskRunner as a context manager"
        weights, bar = weighted_bar(len(items), weights, desc, unit, self.progress)
        futures = {}
        for index, (item, weight) in enumerate(zip(items, weights, strict=True)):
            # heavier first (priority), so one big series scheduled last cannot leave the other workers idle
            future = self._client.submit(_call, fn, item, retries=RETRIES, pure=False, priority=weight)
            futures[future] = index
        results: list[Any] = [None] * len(items)
        try:
            with bar:
                for future in as_completed(futures):
                    index = futures[future]
                    results[index] = future.result()
                    bar.update(weights[index])
        except BaseException:
            self._client.cancel(list(futures))
            raise
        return results
