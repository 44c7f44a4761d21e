"""Fixtures for ingestion tests: corpora are built once per session and ingested once per setting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk

from cssl_core.ingest.pipeline import ingest_directory
from tests.cssl_core.ingest.corpus import EdgeCorpus, build_edge_corpus, pycerr_root

SECRET = b"ingest-test-secret"


def run_ingest(input_dir: Path, output_dir: Path, **kwargs):
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("progress", False)
    return ingest_directory(input_dir, output_dir, **kwargs)


class Ingested:
    """An ingest output folder with lookups by input file path."""

    def __init__(self, out: Path, summary, root: Path | None = None) -> None:
        self.out = out
        self.root = root
        self.summary = summary
        self.files = pd.read_parquet(out / "files.parquet")
        self.manifest = pd.read_parquet(out / "manifest.parquet")
        self.slices = pd.read_parquet(out / "slices.parquet")

    def accounts_for(self, root: Path) -> bool:
        """Every file under root has exactly one row, and nothing else does."""
        found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return list(self.files["path"]) == found and self.summary.n_files == len(found)

    def file(self, rel: str) -> pd.Series:
        return self.files.set_index("path").loc[rel]

    def series_of(self, rel: str) -> pd.Series:
        key = self.file(rel)["series_key"]
        return self.manifest.set_index("series_key").loc[key]

    def image_of(self, rel: str) -> sitk.Image:
        return sitk.ReadImage(str(self.out / self.series_of(rel)["volume_path"]))


@pytest.fixture(scope="session")
def pycerr_ingested(tmp_path_factory) -> Ingested:
    out = tmp_path_factory.mktemp("pycerr") / "out"
    return Ingested(out, run_ingest(pycerr_root(), out))


@pytest.fixture(scope="session")
def edge_corpus(tmp_path_factory) -> EdgeCorpus:
    return build_edge_corpus(tmp_path_factory.mktemp("edge") / "cohort")


@pytest.fixture(scope="session")
def edge_ingested(edge_corpus, tmp_path_factory) -> Ingested:
    out = tmp_path_factory.mktemp("edge_out") / "out"
    return Ingested(out, run_ingest(edge_corpus.root, out, workers=1))


@pytest.fixture(scope="session")
def edge_ingested_parallel(edge_corpus, tmp_path_factory) -> Ingested:
    out = tmp_path_factory.mktemp("edge_out2") / "out"
    return Ingested(out, run_ingest(edge_corpus.root, out, workers=2))
