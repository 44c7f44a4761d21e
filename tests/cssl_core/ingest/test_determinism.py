"""Same input, same bytes: outputs do not depend on the number of workers (DVC hashes them)."""

from __future__ import annotations

import threading
from pathlib import Path

from cssl_core.ingest.parallel import pool_context
from tests.cssl_core.ingest.conftest import Ingested, run_ingest
from tests.cssl_core.ingest.corpus import pycerr_root


def _contents(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_edge_corpus_identical_with_one_and_two_workers(edge_ingested, edge_ingested_parallel):
    one, two = _contents(edge_ingested.out), _contents(edge_ingested_parallel.out)
    assert sorted(one) == sorted(two)
    assert [name for name in one if one[name] != two[name]] == []


def test_real_series_identical_with_one_and_two_workers(pycerr_ingested, tmp_path):
    parallel = Ingested(tmp_path / "out", run_ingest(pycerr_root(), tmp_path / "out", workers=2))
    one, two = _contents(pycerr_ingested.out), _contents(parallel.out)
    assert sorted(one) == sorted(two)
    assert [name for name in one if one[name] != two[name]] == []
    assert parallel.summary == pycerr_ingested.summary


def test_rerun_gives_identical_bytes(edge_corpus, edge_ingested, tmp_path):
    again = tmp_path / "again"
    run_ingest(edge_corpus.root, again, workers=1)
    assert _contents(again) == _contents(edge_ingested.out)


def test_forkserver_when_other_threads_run(pycerr_ingested, tmp_path):
    """With another thread alive, workers come from a fork server (forking could copy a held lock)."""
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    helper.start()
    try:
        assert pool_context().get_start_method() == "forkserver"
        run_ingest(pycerr_root(), tmp_path / "out", workers=2)
    finally:
        stop.set()
        helper.join()
    assert pool_context().get_start_method() == "fork"
    assert _contents(tmp_path / "out") == _contents(pycerr_ingested.out)
