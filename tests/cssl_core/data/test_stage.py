"""cssl_core/data/stage.py: what a stage trains and holds out."""

from __future__ import annotations


def test_a_stage_holding_out_too_little_says_so_in_one_line():
    """An own cohort of 5 patients at val_fraction 0.2 held out one patient's 2 slices, silently (second new-user
    trial, finding 11): its validation loss and forgetting metric rested on them."""
    from cssl_core.data.stage import held_out_warning

    line = held_out_warning({"val_rows": [7, 8], "n_val_patients": 1}, "own")
    assert line.startswith("warning: stage own holds out 2 slice(s) of 1 patient(s)") and "\n" not in line
    assert "ssl.val_fraction" in line
    assert held_out_warning({"val_rows": list(range(40)), "n_val_patients": 1}, "s1") is not None  # one patient
    assert held_out_warning({"val_rows": list(range(40)), "n_val_patients": 2}, "s1") is None
    assert held_out_warning({"val_rows": [], "n_val_patients": 0}, "s1") is None  # val_fraction 0: on purpose


def test_the_split_record_names_the_audit_patients_only_when_it_holds_any_out(tmp_path):
    from cssl_core.data.stage import stage_loaders
    from tests.cssl_core.train.fixtures import write_windowed

    data = write_windowed(tmp_path / "w", n=40, size=32, n_patients=8)
    _, plain = stage_loaders(data, 32, 0.25, 8, 0, seed=1, augment="none")
    assert "audit_rows" not in plain and plain["n_val_patients"] == 2 and plain["n_train_patients"] == 6
    _, held = stage_loaders(data, 32, 0.25, 8, 0, seed=1, augment="none", audit_fraction=0.25)
    assert held["val_rows"] == plain["val_rows"]  # the audit's patients come out of training
    assert held["n_audit_patients"] == 2 and held["n_train_patients"] == 4
    assert not set(held["audit_rows"]) & set(held["train_rows"])
    assert sorted(held["audit_rows"] + held["train_rows"]) == sorted(plain["train_rows"])
