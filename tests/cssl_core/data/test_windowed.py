from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from cssl_core.data import WindowedSlices, make_loader, set_epoch, train_transforms, train_val_split
from tests.cssl_core.train.fixtures import write_windowed

S = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    return write_windowed(tmp_path_factory.mktemp("windowed") / "synthetic-lung", n=48, size=S)


def test_dataset_reads_rows_lazily_from_the_memmap(root):
    ds = WindowedSlices(root, rows=[5, 2, 7])
    assert ds._array is None  # nothing mapped until a sample is read
    sample = ds[1]
    assert isinstance(ds.array, np.memmap)  # pages come from the file, the array is never loaded whole
    assert sample["row"] == 2
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (1, S, S)
    stored = np.load(root / "slices.npy")[2]
    torch.testing.assert_close(sample["image"][0], torch.from_numpy(stored.astype(np.float32) / 255.0))
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    # a pickled dataset (what a spawned worker receives) carries no pixels
    assert len(pickle.dumps(ds)) < 4096
    assert pickle.loads(pickle.dumps(ds))._array is None
    assert len(ds) == 3 and list(ds.index()["slice_index"]) == list(
        pd.read_parquet(root / "index.parquet").iloc[[5, 2, 7]]["slice_index"]
    )


def test_float16_slices_and_bad_inputs(tmp_path):
    np.save(tmp_path / "slices.npy", np.full((4, 8, 8), 0.25, dtype=np.float16))
    assert float(WindowedSlices(tmp_path)[0]["image"].mean()) == pytest.approx(0.25)
    np.save(tmp_path / "slices.npy", np.zeros((4, 8, 8), dtype=np.int16))
    with pytest.raises(ValueError, match="dtype"):
        WindowedSlices(tmp_path)
    with pytest.raises(FileNotFoundError):
        WindowedSlices(tmp_path / "missing")
    np.save(tmp_path / "slices.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(IndexError):
        WindowedSlices(tmp_path, rows=[4])


def test_train_transforms_keep_size_range_and_are_seeded():
    pipeline = train_transforms(S, seed=0)
    image = torch.rand(1, S, S)
    out = pipeline(image)
    assert out.shape == (1, S, S) and out.dtype == torch.float32 and type(out) is torch.Tensor
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert torch.equal(train_transforms(S, seed=3)(image), train_transforms(S, seed=3)(image))


def test_patient_level_split_is_disjoint_and_seeded():
    index = pd.DataFrame({"patient_key": [f"p{i % 10}" for i in range(100)]})
    train, val = train_val_split(index, 0.2, seed=0)
    assert len(train) + len(val) == 100 and set(train).isdisjoint(val)
    train_patients = set(index["patient_key"].iloc[train])
    val_patients = set(index["patient_key"].iloc[val])
    assert not train_patients & val_patients and len(val_patients) == 2
    again = train_val_split(index, 0.2, seed=0)
    assert np.array_equal(again[1], val)
    other = train_val_split(index, 0.2, seed=1)
    assert not np.array_equal(other[1], val)
    assert len(train_val_split(index, 0.0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match="patient"):
        train_val_split(pd.DataFrame({"patient_key": ["a", "a"]}), 0.5, seed=0)


def _epoch(loader, epoch: int) -> tuple[list[list[int]], torch.Tensor]:
    set_epoch(loader, epoch)
    batches = list(loader)
    return [b["row"].tolist() for b in batches], torch.cat([b["image"] for b in batches])


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_is_a_pure_function_of_seed_and_epoch(root, workers):
    def loader():
        return make_loader(WindowedSlices(root, transform=train_transforms(S)), 8, workers=workers, seed=11)

    persistent = loader()
    rows0, images0 = _epoch(persistent, 0)
    rows1, images1 = _epoch(persistent, 1)
    fresh_rows1, fresh_images1 = _epoch(loader(), 1)  # a new process resuming at epoch 1
    assert rows1 == fresh_rows1 and torch.equal(images1, fresh_images1)
    assert rows0 != rows1 and sorted(sum(rows0, [])) == list(range(48))
    # any worker count gives the same epoch: augmentations are seeded per sample, not per worker
    single_rows1, single_images1 = _epoch(make_loader(WindowedSlices(root, transform=train_transforms(S)), 8, 0, 11), 1)
    assert rows1 == single_rows1 and torch.equal(images1, single_images1)
    # augmentations are really applied
    plain = WindowedSlices(root)
    first = rows1[0][0]
    assert not torch.equal(images1[0], plain[first]["image"])
    assert len(images0) == 48


def test_loader_refuses_datasets_smaller_than_a_batch(root):
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_loader(WindowedSlices(root, rows=[0, 1]), 8, workers=0, seed=0)
