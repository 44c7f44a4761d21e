"""The torch-free option specs (cssl_core.strategies.options) and the strategy classes agree.

`cssl check` validates ssl.strategies.* and replay.selection_options with the specs, pretrain with the classes:
a block one accepts and the other refuses would pass the check and fail a stage (or the reverse).
"""

from __future__ import annotations

import pytest

from cssl_core.distill import WKD_MODES, wkd_options
from cssl_core.strategies import STRATEGIES, build_strategy
from cssl_core.strategies.options import (
    STRATEGY_NAMES,
    STRATEGY_OPTIONS,
    WKD_CHOICES,
    WKD_MODE_OPTIONS,
    strategy_options,
)


def test_every_registered_class_takes_its_schema_from_its_spec():
    assert tuple(STRATEGIES) == STRATEGY_NAMES
    for name, cls in STRATEGIES.items():
        spec = STRATEGY_OPTIONS[name]
        assert spec.name == cls.name == name
        assert cls.required_options == spec.required
        assert dict(cls.default_options) == dict(spec.defaults)
        assert cls.buffer_kind == spec.buffer_kind and cls.buffer_selection == spec.buffer_selection


def test_the_wkd_table_is_the_signatures_of_the_wkd_modes():
    assert tuple(WKD_MODE_OPTIONS) == tuple(WKD_MODES)
    assert WKD_CHOICES == (*WKD_MODES, "none")
    for mode in WKD_MODES:
        assert dict(WKD_MODE_OPTIONS[mode]) == wkd_options(mode), mode


GOOD = [
    ("finetune", {}),
    ("finetune", {"mask_ratio": 0.6}),
    ("joint", {"replay_batch_size": None, "new_stage_size": 100}),
    ("er", {"replay_batch_size": 8}),
    ("der", {"alpha": 0.0, "beta": 2}),
    ("medcoss", {"lambda_distill": 0.5}),
    ("latent_replay", {}),
    ("latent_replay", {"replay": False}),
    ("latent_replay", {"wkd": "ot", "wkd_options": {"solver": "sinkhorn", "reg": 0.1}}),
    ("latent_replay", {"wkd": "none", "bke": False}),
]


@pytest.mark.parametrize(("name", "options"), GOOD)
def test_accepted_options_resolve_and_replay_alike(name, options):
    spec = STRATEGY_OPTIONS[name]
    strategy = build_strategy(name, options)
    resolved = spec.validate(options)
    assert resolved == strategy.options
    assert spec.replays(resolved) == strategy.replays


BAD = [
    ("finetune", {"lr": 1}),
    ("er", {"replay_batch_size": 0}),
    ("joint", {"max_replay_batch": 1.5}),
    ("joint", {"new_stage_size": 0}),
    ("der", {"alpha": -1}),
    ("der", {"beta": True}),
    ("medcoss", {"lambda_distill": -0.1}),
    ("medcoss", {"replay_batch_size": "32"}),
    ("latent_replay", {"wkd": "w2"}),
    ("latent_replay", {"wkd_options": []}),
    ("latent_replay", {"wkd": "none", "wkd_options": {"eps": 1e-3}}),
    ("latent_replay", {"wkd_options": {"reg": 1.0}}),
    ("latent_replay", {"bke": 1}),
    ("latent_replay", {"lambda_wkd": -1}),
    ("latent_replay", {"bke_omega": 1.0}),
    ("latent_replay", {"bke_tau": 0}),
    ("latent_replay", {"replay_batch_size": 2.0}),
]


@pytest.mark.parametrize(("name", "options"), BAD)
def test_refused_options_are_refused_alike_with_the_same_message(name, options):
    with pytest.raises(ValueError) as by_class:
        build_strategy(name, options)
    with pytest.raises(ValueError) as by_spec:
        STRATEGY_OPTIONS[name].validate(options)
    assert str(by_spec.value) == str(by_class.value)


def test_an_unknown_strategy_is_the_same_key_error():
    with pytest.raises(KeyError) as by_class:
        build_strategy("nope")
    with pytest.raises(KeyError) as by_spec:
        strategy_options("nope")
    assert str(by_spec.value) == str(by_class.value)
