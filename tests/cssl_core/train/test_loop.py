from __future__ import annotations

import json
import shutil

import pytest
import torch

from cssl_core.data import WindowedSlices, make_loader, train_transforms
from cssl_core.strategies import FinetuneStrategy
from cssl_core.train import CheckpointMismatch, TrainConfig, train_stage, validation_loss
from tests.cssl_core.train.fixtures import micro_model, write_windowed


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return write_windowed(tmp_path_factory.mktemp("loop") / "synthetic-lung", n=32, size=32)


def _loaders(data):
    train = make_loader(WindowedSlices(data, rows=range(24), transform=train_transforms(32)), 8, 0, seed=1)
    val = make_loader(WindowedSlices(data, rows=range(24, 32)), 8, 0, seed=1, shuffle=False, drop_last=False)
    return {"train": train, "val": val}


def test_reports_metrics_per_epoch_and_skips_finished_epochs(data, tmp_path):
    reports = []
    config = TrainConfig(epochs=2, lr=1e-3, seed=1)
    result = train_stage(
        micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path, lambda e, m: reports.append((e, m))
    )
    assert [e for e, _ in reports] == [0, 1] and result.global_step == 6 and result.epochs_run == 2
    metrics = reports[-1][1]
    assert {"loss/mae", "loss/total", "lr", "images_per_s", "data_wait_fraction", "val/mae"} <= set(metrics)
    assert metrics["loss/mae"] == metrics["loss/total"] > 0
    assert 0.0 <= metrics["data_wait_fraction"] < 1.0 and metrics["images_per_s"] > 0
    assert result.history == [m for _, m in reports]

    again = train_stage(
        micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path, lambda e, m: reports.append((e, m))
    )
    assert again.epochs_run == 0 and again.resumed_from == 2 and len(reports) == 2  # nothing re-run or re-reported
    assert again.history == result.history

    # another configuration opens its own directory and trains afresh; the first one's stays, to go back to
    other = train_stage(
        micro_model(), FinetuneStrategy(), _loaders(data), TrainConfig(epochs=1, lr=5e-3, seed=1), tmp_path
    )
    assert other.resumed_from is None and other.checkpoint_dir != result.checkpoint_dir
    assert result.checkpoint_dir.is_dir() and again.checkpoint_dir == result.checkpoint_dir
    # other inputs (the caller's digests of its data) are another configuration too
    moved = train_stage(micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path, inputs={"data": "v2"})
    assert moved.resumed_from is None and moved.checkpoint_dir not in (result.checkpoint_dir, other.checkpoint_dir)


def test_a_directory_holding_another_configurations_checkpoint_is_refused(data, tmp_path):
    first = train_stage(micro_model(), FinetuneStrategy(), _loaders(data), TrainConfig(epochs=1, lr=1e-3), tmp_path)
    config = TrainConfig(epochs=1, lr=5e-3)
    second = train_stage(micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path)
    for name in ("last.pt", "prev.pt"):
        (second.checkpoint_dir / name).unlink(missing_ok=True)
    shutil.copy(first.checkpoint_dir / "last.pt", second.checkpoint_dir / "last.pt")  # copied by hand
    with pytest.raises(CheckpointMismatch, match="train"):
        train_stage(micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path)


def test_checkpoints_of_the_flat_layout_are_adopted(data, tmp_path):
    config = TrainConfig(epochs=1, lr=1e-3)
    first = train_stage(micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path, inputs={"x": 1})
    key = first.checkpoint_dir.name
    for path in first.checkpoint_dir.iterdir():  # the layout before one directory per configuration
        path.replace(tmp_path / path.name)
    first.checkpoint_dir.rmdir()
    (tmp_path / "inputs.json").write_text(json.dumps({"x": 1}))
    again = train_stage(micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path, inputs={"x": 1})
    assert again.adopted == tmp_path / key and again.checkpoint_dir == tmp_path / key
    assert again.epochs_run == 0 and again.resumed_from == 1
    assert not [p for p in tmp_path.iterdir() if p.is_file()]


def test_frozen_lower_stays_fixed_through_a_stage(data, tmp_path):
    model = micro_model()
    model.freeze_lower()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_stage(model, FinetuneStrategy(), _loaders(data), TrainConfig(epochs=1, lr=1e-3, grad_clip=1.0), tmp_path)
    after = model.state_dict()
    lower = [k for k in before if k.startswith(("patch_embedding.", "blocks.0."))]
    assert lower and all(torch.equal(before[k], after[k]) for k in lower)
    assert not torch.equal(before["blocks.1.mlp.linear1.weight"], after["blocks.1.mlp.linear1.weight"])


def test_validation_loss_is_repeatable_and_leaves_training_rng_alone(data):
    model = micro_model()
    loader = _loaders(data)["val"]
    torch.manual_seed(0)
    first = validation_loss(model, loader, seed=3)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    assert validation_loss(model, loader, seed=3) == first
    assert torch.equal(torch.rand(1), expected_next)
    assert model.training


def test_global_deterministic_flag_is_restored(data, tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    train_stage(micro_model(), FinetuneStrategy(), _loaders(data), TrainConfig(epochs=1), tmp_path)
    assert torch.are_deterministic_algorithms_enabled() == before


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_checkpoint_costs_one_epoch_and_the_same_weights(data, tmp_path, capsys):
    config = TrainConfig(epochs=3, lr=1e-3, seed=1)
    reference = micro_model()
    train_stage(reference, FinetuneStrategy(), _loaders(data), config, tmp_path / "reference")
    run = train_stage(micro_model(), FinetuneStrategy(), _loaders(data), config, tmp_path / "run").checkpoint_dir
    capsys.readouterr()

    _truncate(run / "last.pt")
    model = micro_model()
    resumed = train_stage(model, FinetuneStrategy(), _loaders(data), config, run.parent)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 1
    assert "resuming from prev.pt (epoch 2)" in capsys.readouterr().err
    assert (run / "last.pt.corrupt-1").is_file()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())

    _truncate(run / "last.pt")
    _truncate(run / "prev.pt")
    model = micro_model()
    fresh = train_stage(model, FinetuneStrategy(), _loaders(data), config, run.parent)
    assert fresh.resumed_from is None and fresh.epochs_run == 3
    assert capsys.readouterr().err.splitlines()[-1].endswith("training from the start")
    kept = sorted(p.name for p in run.glob("*.corrupt-*"))
    assert kept == ["last.pt.corrupt-1", "last.pt.corrupt-2", "prev.pt.corrupt-1"]
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_batch_augmentation_runs_on_the_device_batch_and_is_its_own_configuration(data, tmp_path):
    """`ssl.augment: batch`: the loader ships uint8 slices with their seeds; the loop augments them on the device."""
    from cssl_core.data.stage import batch_augmenter, stage_loaders

    loaders, _ = stage_loaders(data, 32, 0.25, 8, 0, seed=1, augment="batch")
    first = next(iter(loaders["train"]))
    assert first["image"].dtype == torch.uint8 and first["seed"].shape == (8,)
    seen = []

    class Recording(FinetuneStrategy):
        def observe(self, batch):
            seen.append(batch["image"].clone())
            return super().observe(batch)

    config = TrainConfig(epochs=1, lr=1e-3, seed=1)
    augment = batch_augmenter("batch", 32)
    result = train_stage(micro_model(), Recording(), loaders, config, tmp_path, augment=augment,
                         inputs={"augment": "batch"})
    assert result.epochs_run == 1 and result.history[0]["loss/total"] > 0
    assert all(x.dtype == torch.float32 and x.shape == (8, 1, 32, 32) for x in seen)
    assert all(0.0 <= float(x.min()) and float(x.max()) <= 1.0 for x in seen)
    # the same epoch again (fresh directory): the same augmented batches, bit for bit
    seen_first, seen[:] = list(seen), []
    train_stage(micro_model(), Recording(), stage_loaders(data, 32, 0.25, 8, 0, seed=1, augment="batch")[0], config,
                tmp_path / "again", augment=augment, inputs={"augment": "batch"})
    assert all(torch.equal(a, b) for a, b in zip(seen_first, seen, strict=True))
    assert batch_augmenter("sample", 32) is None
    with pytest.raises(ValueError, match="ssl.augment"):
        stage_loaders(data, 32, 0.25, 8, 0, seed=1, augment="gpu")


def test_no_augmentation_trains_on_the_slices_exactly_as_validation_reads_them(data):
    """`ssl.augment: none`: each train batch holds the stored slices scaled to [0, 1], unchanged (no crop, flip or
    jitter), so a slice looks the same to training and to validation."""
    import numpy as np

    from cssl_core.data.stage import batch_augmenter, stage_loaders
    from cssl_core.data.windowed import WindowedSlices

    loaders, split = stage_loaders(data, 32, 0.25, 8, 0, seed=1, augment="none")
    plain = WindowedSlices(data, rows=np.asarray(split["train_rows"]))
    batches = list(loaders["train"])
    assert batches and batch_augmenter("none", 32) is None
    for batch in batches:
        for image, row in zip(batch["image"], batch["row"], strict=True):
            position = split["train_rows"].index(int(row))
            assert torch.equal(image, plain[position]["image"])
