"""Cross-model reconstruction loss and linear CKA."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cssl_core.evaluation import linear_cka, reconstruction_loss
from tests.cssl_core.train.fixtures import micro_model, structured_images


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.from_numpy(structured_images(10, 32, seed=4)).unsqueeze(1)


def test_same_model_matches_its_own_mae_loss_under_the_same_mask_seed(images):
    model = micro_model(seed=0).eval()
    with torch.no_grad():
        own, _ = model.mae_loss(images, mask_ratio=0.75, generator=torch.Generator().manual_seed(11))
    assert reconstruction_loss(model, model, images, seed=11) == pytest.approx(float(own), rel=1e-5)
    # the masks are drawn before batching, so the batch size does not change the value
    assert reconstruction_loss(model, model, images, seed=11, batch=3) == pytest.approx(float(own), rel=1e-5)
    assert reconstruction_loss(model, model, images, seed=12) != pytest.approx(float(own), rel=1e-5)


def test_encoder_of_one_model_read_by_the_decoder_of_another(images):
    encoder_model, decoder_model = micro_model(seed=0), micro_model(seed=1)
    encoder_model.train()  # reconstruction_loss evaluates in eval mode and must restore the modes
    decoder_model.train()
    mixed = reconstruction_loss(encoder_model, decoder_model, images, seed=5)
    assert encoder_model.training and decoder_model.training
    own = reconstruction_loss(decoder_model, decoder_model, images, seed=5)
    assert mixed != pytest.approx(own, rel=1e-4)
    # the composition equals one model assembled from the encoder of one and the decoder of the other
    hybrid = copy.deepcopy(decoder_model).eval()
    for name in ("patch_embedding", "blocks", "norm"):
        getattr(hybrid, name).load_state_dict(getattr(encoder_model, name).state_dict())
    with torch.no_grad():
        expected, _ = hybrid.mae_loss(images, mask_ratio=0.75, generator=torch.Generator().manual_seed(5))
    assert mixed == pytest.approx(float(expected), rel=1e-5)


def test_incompatible_models_and_images_are_rejected(images):
    model = micro_model(seed=0)
    with pytest.raises(ValueError, match="hidden_size"):
        reconstruction_loss(model, micro_model(seed=0, hidden_size=16, num_heads=2), images, seed=0)
    with pytest.raises(ValueError):
        reconstruction_loss(model, model, images[:, :, :16, :16], seed=0)


def _cka_by_the_formula(X: np.ndarray, Y: np.ndarray) -> float:
    """Kornblith et al. 2019 in the n x n Gram form: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),
    K = X X^T, L = Y Y^T, H = I - 11^T / n (the 1/(n-1)^2 factors of HSIC cancel)."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float(np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L)))


def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))  # correlated channels
    Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, X @ Q) == pytest.approx(1.0)  # orthogonal transform
    assert linear_cka(X, 7.5 * X + 3.0) == pytest.approx(1.0)  # isotropic scaling (and a shift: centred)
    unrelated = linear_cka(X, rng.normal(size=(200, 16)))
    assert unrelated < 0.3
    Y = X[:, :8] + 0.5 * rng.normal(size=(200, 8))
    assert unrelated < linear_cka(X, Y) < 1.0
    assert linear_cka(X, Y) == pytest.approx(_cka_by_the_formula(X, Y))
    assert np.isnan(linear_cka(X, np.ones((200, 3))))  # constant features: undefined
    with pytest.raises(ValueError):
        linear_cka(X, X[:10])
