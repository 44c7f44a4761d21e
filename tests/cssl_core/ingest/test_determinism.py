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
    # fork again once this process runs no other thread (earlier tests in the same session, e.g. a Dask client,
    # may leave daemon threads behind: then the fork server stays the right choice)
    alone = threading.active_count() == 1
    assert pool_context().get_start_method() == ("fork" if alone else "forkserver")
    assert _contents(tmp_path / "out") == _contents(pycerr_ingested.out)


def test_order_and_splits_do_not_depend_on_the_key_secret(pycerr_ingested, tmp_path):
    """Another site (another secret) running the same data gets the same slices, order and splits.

    The keys differ, so sorting by them would reshuffle series between sites; tables are ordered by the
    content digest and splits permute patients in row order instead.
    """
    import pandas as pd

    from cssl_core.data import train_val_split
    from cssl_core.evaluation import patient_folds
    from cssl_core.windowing import Window
    from tasks.window import window_cohort

    other = tmp_path / "other-site"
    run_ingest(pycerr_root(), other, workers=1, secret=b"a-different-site-secret")
    mine = pd.read_parquet(pycerr_ingested.out / "manifest.parquet")
    theirs = pd.read_parquet(other / "manifest.parquet")
    assert set(mine["series_key"]).isdisjoint(theirs["series_key"])  # the secret does change the keys
    assert mine["content_digest"].tolist() == theirs["content_digest"].tolist()
    assert mine["content_digest"].is_monotonic_increasing

    lung = Window("lung", width=1500, level=-600)
    indexes = []
    for name, interim in (("mine", pycerr_ingested.out), ("theirs", other)):
        window_cohort(interim, tmp_path / name, lung, size=32, dtype="uint8", cohort="nsclc")
        indexes.append(pd.read_parquet(tmp_path / name / "index.parquet"))
    assert (tmp_path / "mine" / "slices.npy").read_bytes() == (tmp_path / "theirs" / "slices.npy").read_bytes()
    a, b = indexes
    assert a[["slice_index", "z_mm", "has_mask"]].equals(b[["slice_index", "z_mm", "has_mask"]])
    for seed in (0, 1, 2):
        assert [x.tolist() for x in train_val_split(a, 0.25, seed)] == [
            x.tolist() for x in train_val_split(b, 0.25, seed)
        ]
        folds_a = patient_folds(a["patient_key"], 2, seed)
        folds_b = patient_folds(b["patient_key"], 2, seed)
        assert [(tr.tolist(), te.tolist()) for tr, te in folds_a] == [(tr.tolist(), te.tolist()) for tr, te in folds_b]
    # guard against a vacuous pass: the splits do move with the seed
    assert any(
        train_val_split(a, 0.25, seed)[1].tolist() != train_val_split(a, 0.25, 0)[1].tolist() for seed in (1, 2, 3)
    )
