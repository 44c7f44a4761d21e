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
