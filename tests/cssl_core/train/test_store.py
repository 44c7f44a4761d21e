from __future__ import annotations

import json
import os

import pytest

from cssl_core.train.store import FINGERPRINT_FILE, checkpoint_dir, evict, fingerprint_key

A = {"inputs": {"prev_model": "aa", "params": {"lr": 5e-4}}, "training": {"train": {"epochs": 30}}}
B = {"inputs": {"prev_model": "bb", "params": {"lr": 5e-4}}, "training": {"train": {"epochs": 30}}}


def _age(path, seconds_ago: int) -> None:
    """Set an explicit modification time: the order of eviction must not depend on the clock's resolution."""
    stamp = (1_700_000_000 - seconds_ago) * 10**9
    os.utime(path, ns=(stamp, stamp))


def test_key_depends_on_content_only():
    reordered = {"training": {"train": {"epochs": 30}}, "inputs": {"params": {"lr": 5e-4}, "prev_model": "aa"}}
    assert fingerprint_key(A) == fingerprint_key(reordered) == fingerprint_key(json.loads(json.dumps(A)))
    assert fingerprint_key(A) != fingerprint_key(B)
    assert len(fingerprint_key(A)) == 16


def test_each_configuration_has_its_own_directory_with_its_fingerprint(tmp_path):
    first, evicted = checkpoint_dir(tmp_path, A, keep=3)
    second, _ = checkpoint_dir(tmp_path, B, keep=3)
    assert evicted == [] and first != second and first.parent == second.parent == tmp_path
    assert json.loads((first / FINGERPRINT_FILE).read_text()) == A
    (first / "last.pt").write_bytes(b"A's training")
    again, _ = checkpoint_dir(tmp_path, A, keep=3)
    assert again == first and (again / "last.pt").read_bytes() == b"A's training"


def test_the_least_recently_used_directories_go_first(tmp_path):
    dirs = {}
    for i, name in enumerate("abcd"):
        dirs[name], _ = checkpoint_dir(tmp_path, {"config": name}, keep=10)
        (dirs[name] / "last.pt").write_bytes(b"x" * (i + 1))
        _age(dirs[name], seconds_ago=100 - i)  # a oldest ... d newest
    _age(dirs["a"], seconds_ago=1)  # a used again most recently: b is now the oldest
    sizes = {name: sum(f.stat().st_size for f in d.iterdir()) for name, d in dirs.items()}
    current, removed = checkpoint_dir(tmp_path, {"config": "e"}, keep=3)
    assert removed == [(dirs["c"], sizes["c"]), (dirs["b"], sizes["b"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([current.name, dirs["a"].name, dirs["d"].name])


def test_reusing_a_directory_marks_it_recent(tmp_path):
    old, _ = checkpoint_dir(tmp_path, A, keep=3)
    other, _ = checkpoint_dir(tmp_path, B, keep=3)
    _age(old, 50)
    _age(other, 10)
    checkpoint_dir(tmp_path, A, keep=3)  # going back to A
    _, removed = checkpoint_dir(tmp_path, {"config": "c"}, keep=2)
    assert [p for p, _ in removed] == [other] and old.is_dir()


def test_keep_must_leave_room_for_the_current_run(tmp_path):
    with pytest.raises(ValueError, match="keep must be >= 1"):
        evict(tmp_path, 0, tmp_path / "x")
    current, _ = checkpoint_dir(tmp_path, A, keep=1)
    only, removed = checkpoint_dir(tmp_path, B, keep=1)
    assert [p for p, _ in removed] == [current] and list(tmp_path.iterdir()) == [only]


def _share_run(data_dir, strategy_name, root, stage_index=0):
    from cssl_core.data import WindowedSlices, make_loader, train_transforms
    from cssl_core.strategies.registry import build_strategy
    from cssl_core.train import TrainConfig, train_stage
    from tests.cssl_core.train.fixtures import micro_model

    model = micro_model()
    loader = make_loader(WindowedSlices(data_dir, rows=range(16), transform=train_transforms(32)), 8, 0, seed=1)
    strategy = build_strategy(strategy_name, {"replay_batch_size": 8} if strategy_name != "finetune" else None)
    result = train_stage(
        model, strategy, {"train": loader}, TrainConfig(epochs=1, lr=1e-3, seed=1), root, stage_index=stage_index
    )
    return model, result


def test_a_first_stage_published_by_one_checkout_is_taken_by_another(tmp_path, monkeypatch):
    import torch

    from cssl_core.share import SHARE_ENV
    from cssl_core.train.checkpoint import LAST
    from tests.cssl_core.train.fixtures import write_windowed

    data_dir = write_windowed(tmp_path / "w", n=16, size=32)
    monkeypatch.setenv(SHARE_ENV, str(tmp_path / "share"))
    share = tmp_path / "share" / "checkpoints"
    trained, first = _share_run(data_dir, "finetune", tmp_path / "a")  # experiment A trains and publishes
    assert first.epochs_run == 1 and first.shared_from is None
    assert first.published == share / first.checkpoint_dir.name and (first.published / LAST).is_file()
    assert not list(share.rglob("*.partial"))
    taken, second = _share_run(data_dir, "latent_replay", tmp_path / "b")  # experiment B: another checkout
    assert second.epochs_run == 0 and second.shared_from == first.published and second.published is None
    assert second.checkpoint_dir.name == first.checkpoint_dir.name
    pairs = zip(trained.state_dict().values(), taken.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    # a later stage is strategy-specific: neither taken from nor published to the share
    _, later = _share_run(data_dir, "latent_replay", tmp_path / "c", stage_index=1)
    assert later.epochs_run == 1 and later.shared_from is None and later.published is None
    assert sorted(p.name for p in share.iterdir()) == [first.checkpoint_dir.name]


def test_without_the_share_variable_nothing_is_shared(tmp_path, monkeypatch):
    from cssl_core.share import SHARE_ENV
    from tests.cssl_core.train.fixtures import write_windowed

    monkeypatch.delenv(SHARE_ENV, raising=False)
    data_dir = write_windowed(tmp_path / "w", n=16, size=32)
    _, first = _share_run(data_dir, "finetune", tmp_path / "a")
    _, second = _share_run(data_dir, "finetune", tmp_path / "b")
    assert first.published is None and second.shared_from is None and second.epochs_run == 1


def test_a_half_published_run_is_not_taken(tmp_path):
    from cssl_core.train.checkpoint import LAST
    from cssl_core.train.store import fetch_shared

    share, directory = tmp_path / "share", tmp_path / "root" / "abc"
    (share / "abc").mkdir(parents=True)
    (share / "abc" / f".{LAST}.123.partial").write_bytes(b"half")  # a publisher died mid-copy
    directory.mkdir(parents=True)
    assert not fetch_shared(share, directory, LAST) and not list(directory.iterdir())
