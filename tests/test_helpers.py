"""tests/helpers.py: each tiny_params() is a fresh copy that one test can edit without leaking into the next."""

from __future__ import annotations

import copy

from tests.helpers import ATTACKER, TINY_PARAMS_OVERRIDES, tiny_params


def test_tiny_params_share_no_list_or_dict_between_calls():
    before = copy.deepcopy(TINY_PARAMS_OVERRIDES)
    first = tiny_params()
    first["ingest"]["cohorts"].append("extra")
    first["ssl"]["model"]["img_size"] = 64
    first["privacy"]["attack"]["decoder_steps"] = 1
    first["data"]["demo"]["phantom_a"]["n_patients"] = 9
    second = tiny_params()
    assert second["ingest"]["cohorts"] == ["phantom_a", "phantom_b", ATTACKER]
    assert second["ssl"]["model"]["img_size"] == 32
    assert second["privacy"]["attack"]["decoder_steps"] == 20
    assert second["data"]["demo"]["phantom_a"]["n_patients"] == 2
    assert TINY_PARAMS_OVERRIDES == before
