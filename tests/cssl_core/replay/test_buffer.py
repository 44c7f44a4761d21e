"""The replay buffer file: round trips, accumulation across stages, and the privacy contract."""

import json
import os
import re

import numpy as np
import pytest

from cssl_core.replay.buffer import (
    ReplayBuffer,
    buffer_nbytes,
    concat_buffers,
    load_buffer,
    save_buffer,
)

IDENTIFYING = re.compile(r"patient|series|study|uid|accession|institution|\bkey|_key|key_|\bid\b|_id\b", re.I)


def latent_buffer(n: int = 12, stage: str = "stage1", window: str = "mediastinal", seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    return ReplayBuffer(
        kind="latent",
        data=rng.standard_normal((n, 36, 16)).astype(np.float16),
        stage=np.array([stage] * n),
        window=np.array([window] * n),
        labels={"has_finding": rng.random(n) > 0.5, "finding_type": rng.integers(0, 3, n).astype(np.int8)},
    )


def image_buffer(n: int = 6, stage: str = "stage1", with_features: bool = True) -> ReplayBuffer:
    rng = np.random.default_rng(1)
    return ReplayBuffer(
        kind="image",
        data=rng.integers(0, 256, (n, 24, 24), dtype=np.uint8),
        stage=np.array([stage] * n),
        window=np.array(["lung"] * n),
        labels={"has_finding": np.ones(n, bool)},
        features=rng.standard_normal((n, 8)).astype(np.float16) if with_features else None,
    )


def assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert a.kind == b.kind
    assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    assert np.array_equal(a.stage, b.stage) and np.array_equal(a.window, b.window)
    assert a.labels.keys() == b.labels.keys()
    for name in a.labels:
        assert a.labels[name].dtype == b.labels[name].dtype and np.array_equal(a.labels[name], b.labels[name])
    assert (a.features is None) == (b.features is None)
    if a.features is not None:
        assert a.features.dtype == b.features.dtype and np.array_equal(a.features, b.features)


def test_latent_round_trip(tmp_path):
    buffer = latent_buffer()
    save_buffer(buffer, tmp_path / "buf")
    loaded = load_buffer(tmp_path / "buf", mmap=False)
    assert loaded.data.dtype == np.float16 and not isinstance(loaded.data, np.memmap)
    assert_same(buffer, loaded)
    assert len(loaded) == 12 and not loaded.keeps_raw_images


def test_mmap_load_is_read_only(tmp_path):
    save_buffer(latent_buffer(), tmp_path / "buf")
    loaded = load_buffer(tmp_path / "buf")
    assert isinstance(loaded.data, np.memmap) and not loaded.data.flags.writeable
    assert_same(latent_buffer(), loaded)


def test_image_buffer_round_trip_declares_raw_images(tmp_path):
    buffer = image_buffer()
    save_buffer(buffer, tmp_path / "img")
    loaded = load_buffer(tmp_path / "img")
    assert_same(buffer, loaded)
    assert isinstance(loaded.features, np.memmap)
    meta = json.loads((tmp_path / "img" / "meta.json").read_text())
    assert meta["keeps_raw_images"] is True and meta["kind"] == "image"
    assert loaded.keeps_raw_images


def test_concat_keeps_stage_names_and_marks_missing_labels_unknown(tmp_path):
    first = latent_buffer(5, "stage1", "mediastinal", seed=1)
    second = latent_buffer(3, "stage2", "lung", seed=2)
    second.labels = {"has_finding": second.labels["has_finding"]}
    both = concat_buffers([first, second])
    assert both.stage.tolist() == ["stage1"] * 5 + ["stage2"] * 3
    assert both.window.tolist() == ["mediastinal"] * 5 + ["lung"] * 3
    assert np.array_equal(both.data, np.concatenate([first.data, second.data]))
    assert both.labels["has_finding"].dtype == bool
    assert both.labels["finding_type"].tolist() == first.labels["finding_type"].tolist() + [-1, -1, -1]
    save_buffer(both, tmp_path / "acc")
    reloaded = load_buffer(tmp_path / "acc")
    assert_same(both, reloaded)
    assert json.loads((tmp_path / "acc" / "meta.json").read_text())["stages"] == ["stage1", "stage2"]
    # loaded (memory-mapped) buffers of earlier stages accumulate as well
    assert concat_buffers([reloaded, latent_buffer(2, "stage3")]).stage.tolist()[-3:] == ["stage2", "stage3", "stage3"]


def test_concat_refuses_mismatches():
    with pytest.raises(ValueError, match="cannot concatenate"):
        concat_buffers([latent_buffer(), image_buffer()])
    other = latent_buffer()
    other.data = other.data[:, :10]
    with pytest.raises(ValueError, match="per-sample data differ"):
        concat_buffers([latent_buffer(), other])
    with pytest.raises(ValueError, match="features"):
        concat_buffers([image_buffer(), image_buffer(with_features=False)])
    with pytest.raises(ValueError, match="at least one"):
        concat_buffers([])


def test_reported_bytes_equal_file_sizes(tmp_path):
    written = save_buffer(latent_buffer(), tmp_path / "buf")
    on_disk = sum(os.path.getsize(p) for p in (tmp_path / "buf").iterdir())
    assert written == on_disk == buffer_nbytes(tmp_path / "buf")
    assert written > 12 * 36 * 16 * 2  # float16 latents are in there, uncompressed


def test_overwrites_a_buffer_but_never_other_directories(tmp_path):
    save_buffer(latent_buffer(), tmp_path / "buf")
    save_buffer(latent_buffer(4, "stage9"), tmp_path / "buf")
    assert load_buffer(tmp_path / "buf").stage.tolist() == ["stage9"] * 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        save_buffer(latent_buffer(), tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buf", "other"]  # no temporary left behind


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (np.zeros((4, 24, 24), np.uint8), TypeError, "image dtype"),
        (np.zeros((4, 1, 24, 24), np.float16), ValueError, "4-D"),
        (np.zeros((24, 24), np.float16), ValueError, "2-D"),
        (np.zeros((4, 36, 16), np.float32), TypeError, "float16"),
    ],
)
def test_latent_buffer_refuses_image_shapes_and_dtypes(data, error, match):
    n = data.shape[0]
    with pytest.raises(error, match=match):
        ReplayBuffer("latent", data, np.array(["s"] * n), np.array(["w"] * n))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.random.default_rng(0).random((4, 24, 24)), r"\[0, 1\]"),  # a float16 windowed slice
        (np.random.default_rng(0).integers(-1000, 400, (4, 24, 24)), "integral"),  # HU stored as float
        (np.full((4, 36, 16), 1e6), "NaN or inf"),  # float32 -> float16 overflow
    ],
)
def test_save_refuses_latents_with_image_values(tmp_path, values, match):
    with np.errstate(over="ignore"):
        data = values.astype(np.float16)
    buffer = ReplayBuffer("latent", data, np.array(["s"] * 4), np.array(["w"] * 4))
    with pytest.raises(ValueError, match=match):
        save_buffer(buffer, tmp_path / "buf")
    assert not (tmp_path / "buf").exists()


def test_latent_buffer_refuses_extra_fields(tmp_path):
    buffer = latent_buffer()
    with pytest.raises(TypeError):
        ReplayBuffer("latent", buffer.data, buffer.stage, buffer.window, patient_key=np.zeros(12))  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        buffer.patient_key = np.zeros(12)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="latents only"):
        ReplayBuffer("latent", buffer.data, buffer.stage, buffer.window, features=np.zeros((12, 8), np.float16))
    for name in ("patient_key", "series_uid", "study_date", "patientid", "slice_id", "sop_instance", "key"):
        with pytest.raises(ValueError, match="identifier"):
            ReplayBuffer("latent", buffer.data, buffer.stage, buffer.window, labels={name: np.zeros(12, bool)})
    with pytest.raises(TypeError, match="bool or integer"):
        ReplayBuffer("latent", buffer.data, buffer.stage, buffer.window, labels={"finding": np.array(["a"] * 12)})
    buffer.labels["series_key"] = np.zeros(12, bool)  # smuggled in after construction: the writer re-checks
    with pytest.raises(ValueError, match="identifier"):
        save_buffer(buffer, tmp_path / "buf")
    ReplayBuffer("latent", buffer.data, buffer.stage, buffer.window, labels={"pleural_fluid": np.zeros(12, bool)})


def test_load_refuses_files_added_after_writing(tmp_path):
    save_buffer(latent_buffer(), tmp_path / "buf")
    np.save(tmp_path / "buf" / "pixels.npy", np.zeros((12, 24, 24), np.uint8))
    with pytest.raises(ValueError, match="unexpected"):
        load_buffer(tmp_path / "buf")


def test_stored_files_hold_latents_and_names_only(tmp_path):
    save_buffer(latent_buffer(), tmp_path / "buf")
    files = sorted(p.name for p in (tmp_path / "buf").iterdir())
    assert files == [
        "data.npy",
        "label.finding_type.npy",
        "label.has_finding.npy",
        "meta.json",
        "stage.npy",
        "window.npy",
    ]
    meta_text = (tmp_path / "buf" / "meta.json").read_text()
    meta = json.loads(meta_text)
    names = [*files, *meta, *meta["arrays"], *meta["labels"]]
    assert not [name for name in names if IDENTIFYING.search(name)]
    assert meta["keeps_raw_images"] is False and meta["phi_equivalent"] is True
    assert "not anonymous" in meta["privacy"]
    for name in files:
        if name.endswith(".npy"):
            array = np.load(tmp_path / "buf" / name, allow_pickle=False)
            assert array.dtype.kind in "fbiuU" and not (array.ndim == 3 and array.dtype == np.uint8)
    assert np.load(tmp_path / "buf" / "data.npy").shape == (12, 36, 16)
