"""Tiny fixtures for the privacy attacks: a 32 px, 3-block MAE split at block 1, and smooth synthetic slices.

Smooth random blobs stand in for CT: they have the low-frequency structure a real slice has (so an inversion
has something to recover) without any patient data. One torch thread: these models are so small that
OpenMP threads only contend with each other on a shared CPU (measured 20x slower with 2 threads under load).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.models import MAEConfig, MaskedAutoencoder

SIZE = 32


def make_blobs(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """(n, size, size) float32 in [0, 1]: a sum of four Gaussian blobs of random place, width and brightness."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for _ in range(4):
            cy, cx = rng.uniform(0, size, 2)
            width = rng.uniform(size / 10, size / 4)
            out[i] += rng.uniform(0.3, 0.8) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width * width))
    return np.clip(out, 0.0, 1.0)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def blobs():
    return make_blobs


@pytest.fixture
def tiny_model() -> MaskedAutoencoder:
    """Untrained (seeded) MAE: even a random lower encoder keeps enough of x for the attacks to work."""
    config = MAEConfig(
        img_size=SIZE,
        patch_size=8,
        hidden_size=32,
        num_layers=3,
        num_heads=2,
        mlp_dim=64,
        decoder_hidden_size=32,
        decoder_num_layers=1,
        decoder_num_heads=2,
        decoder_mlp_dim=64,
        split_block=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MaskedAutoencoder(config).eval()
