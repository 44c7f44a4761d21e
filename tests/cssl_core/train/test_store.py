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
