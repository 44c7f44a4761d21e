from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.privacy.baseline import predict_mean
from cssl_core.privacy.common import encode
from cssl_core.privacy.decoder import InversionDecoder, decoder_reconstruct, train_decoder
from cssl_core.privacy.scoring import score

SMALL = dict(width=32, depth=1, heads=2)


def test_trained_decoder_learns_to_invert_and_leaves_the_shared_model_alone(tiny_model, blobs):
    attacker, victims = blobs(120, seed=1), blobs(16, seed=2)
    stored = encode(tiny_model, victims).astype(np.float16)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}

    trained = train_decoder(tiny_model, attacker, steps=120, seed=0, **SMALL)
    recon = decoder_reconstruct(tiny_model, trained, stored)

    assert trained.steps == 120 and len(trained.losses) == 120
    assert np.mean(trained.losses[-10:]) < 0.5 * np.mean(trained.losses[:10])
    assert recon.shape == victims.shape and 0.0 <= recon.min() and recon.max() <= 1.0
    baseline = np.median(score(predict_mean(attacker, len(victims)), victims)["ssim"])
    assert np.median(score(recon, victims)["ssim"]) > baseline + 0.2
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_same_seed_same_decoder_and_the_callers_rng_is_untouched(tiny_model, blobs):
    attacker = blobs(40, seed=1)
    stored = encode(tiny_model, blobs(4, seed=2))
    rng_before = torch.get_rng_state()
    first = train_decoder(tiny_model, attacker, steps=5, seed=3, **SMALL).predict(stored)
    second = train_decoder(tiny_model, attacker, steps=5, seed=3, **SMALL).predict(stored)
    other = train_decoder(tiny_model, attacker, steps=5, seed=4, **SMALL).predict(stored)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_decoder_refuses_bad_sizes_and_budgets(tiny_model, blobs):
    with pytest.raises(ValueError, match="multiple of heads"):
        InversionDecoder(16, 32, 8, width=30, heads=4)
    with pytest.raises(ValueError, match="square grid"):
        InversionDecoder(15, 32, 8)
    with pytest.raises(ValueError, match="steps"):
        train_decoder(tiny_model, blobs(4, seed=0), steps=0)
    with pytest.raises(ValueError, match="lr"):
        train_decoder(tiny_model, blobs(4, seed=0), steps=1, lr=-1.0)


def test_stalled_compares_the_mean_loss_of_the_last_two_windows():
    from cssl_core.privacy.decoder import stalled

    assert not stalled([1.0] * 5, window=5, tolerance=0.01)  # one window: nothing to compare yet
    assert stalled([1.0] * 5 + [0.995] * 5, window=5, tolerance=0.01)  # 0.5 % better: stalled
    assert not stalled([1.0] * 5 + [0.9] * 5, window=5, tolerance=0.01)  # 10 % better: still learning
    assert not stalled([9.0] * 5 + [1.0] * 5 + [0.9] * 5, window=5, tolerance=0.01)  # only the last two count


def test_decoder_trains_until_its_loss_stalls_within_the_budget(tiny_model, blobs):
    """converge_tol > 0: the budget bounds the cost and the loss decides when to stop; 0: exactly the budget."""
    from cssl_core.privacy.decoder import CONVERGE_WINDOW

    attacker = blobs(40, seed=1)
    exact = train_decoder(tiny_model, attacker, steps=2 * CONVERGE_WINDOW + 7, seed=0, **SMALL)
    assert exact.steps == 2 * CONVERGE_WINDOW + 7 and not exact.converged
    # a tolerance no window can meet stops at the first check that has two windows
    quick = train_decoder(tiny_model, attacker, steps=10 * CONVERGE_WINDOW, seed=0, converge_tol=0.99, **SMALL)
    assert quick.converged and quick.steps == 2 * CONVERGE_WINDOW == len(quick.losses)
    assert quick.losses == exact.losses[: quick.steps]  # the same training, stopped earlier
    # a budget that runs out first is reported as not converged
    capped = train_decoder(tiny_model, attacker, steps=CONVERGE_WINDOW, seed=0, converge_tol=0.99, **SMALL)
    assert capped.steps == CONVERGE_WINDOW and not capped.converged
    with pytest.raises(ValueError, match="converge_tol"):
        train_decoder(tiny_model, attacker, steps=1, converge_tol=-0.1)
