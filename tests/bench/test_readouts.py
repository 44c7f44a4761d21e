"""bench/readouts.py: its readouts and label thresholds on small arrays, and block_tokens against the model's own
encode (no training, no cohort: the study itself is a bench run, not a test)."""

from __future__ import annotations

import numpy as np
import torch

from bench import readouts as bench
from cssl_core.models.config import MAEConfig
from cssl_core.models.mae import MaskedAutoencoder


def test_readouts_pool_each_block_and_the_last_several_ways():
    tokens = np.arange(3 * 2 * 4 * 5, dtype=np.float32).reshape(3, 2, 4, 5)  # (blocks, n, tokens, C)
    out = bench.readouts(tokens)
    assert set(out) == {"mean_last", "max_last", "meanmax_last", "sd_last", "mean_block1", "mean_block2"}
    np.testing.assert_allclose(out["mean_last"], tokens[2].mean(1))
    np.testing.assert_allclose(out["max_last"], tokens[2][:, -1])  # increasing along tokens
    assert out["meanmax_last"].shape == (2, 10)
    np.testing.assert_allclose(out["mean_block1"], tokens[0].mean(1))


def test_visible_labels_leave_out_slices_below_the_threshold():
    area = np.array([0, 2, 10, 30, 0])
    keep, y = bench.visible_labels(area, 10)
    assert keep.tolist() == [True, False, True, True, True]
    assert y[keep].tolist() == [0, 1, 1, 0]


def test_block_tokens_last_block_is_what_encode_returns():
    torch.manual_seed(0)
    model = MaskedAutoencoder(MAEConfig(img_size=32, patch_size=16, hidden_size=24, num_layers=2, num_heads=2,
                                        mlp_dim=48, decoder_hidden_size=16, decoder_num_layers=1,
                                        decoder_num_heads=2, decoder_mlp_dim=32, split_block=1)).eval()  # fmt: skip
    images = torch.rand(3, 1, 32, 32)
    tokens = bench.block_tokens(model, images, batch=2)
    assert tokens.shape == (2, 3, 4, 24)
    with torch.no_grad():
        np.testing.assert_allclose(tokens[-1], model.encode(images).numpy(), atol=1e-5)
