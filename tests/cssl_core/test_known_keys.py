"""The one "unknown key" check the config dataclasses share (cssl_core/known_keys.py): the messages each of them
gave before it existed, word for word."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cssl_core.demo.phantom import PhantomConfig
from cssl_core.known_keys import reject_unknown_keys
from cssl_core.models.config import MAEConfig
from cssl_core.privacy.settings import AuditConfig
from cssl_core.replay.release import ReleaseConfig
from cssl_core.train.config import TrainConfig


@dataclass
class Two:
    zeta: int = 0
    alpha: int = 0


def test_known_keys_pass_and_unknown_ones_are_named_sorted():
    reject_unknown_keys({"alpha": 1}, Two, "unknown")
    with pytest.raises(KeyError, match=r"unknown \['b', 'c'\]; known: \['alpha', 'zeta'\]"):
        reject_unknown_keys({"c": 1, "b": 2, "alpha": 3}, Two, "unknown")
    with pytest.raises(ValueError, match=r"x: unknown key\(s\) \['b'\]; fields: \['zeta', 'alpha'\]"):
        reject_unknown_keys({"b": 1}, Two, "x: unknown key(s)", error=ValueError, field_order=True,
                            known_label="fields")


@pytest.mark.parametrize(
    ("build", "error", "start"),
    [
        (TrainConfig.from_dict, KeyError, "unknown training config key(s) ['trian']; known: ['"),
        (MAEConfig.from_dict, KeyError, "unknown MAE config key(s) ['trian']; known: ['"),
        (lambda v: MAEConfig.from_preset("tiny", **v), KeyError, "unknown MAE config key(s) ['trian']; known: ['"),
        (ReleaseConfig.from_dict, ValueError, "replay.privacy: unknown key(s) ['trian']; known: ['mode'"),
        (AuditConfig.from_dict, ValueError, "unknown privacy audit key(s) ['trian']; known: ['"),
        (PhantomConfig.from_mapping, ValueError, "unknown phantom setting(s) ['trian']; known settings: ['"),
    ],
)
def test_every_config_refuses_an_unknown_key_in_its_own_words(build, error, start):
    with pytest.raises(error) as raised:
        build({"trian": 1})
    text = raised.value.args[0]
    assert text.startswith(start), text
