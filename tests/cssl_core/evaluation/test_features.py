"""Frozen-encoder token extraction and raw-pixel reference features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.evaluation import as_images, extract_tokens, pixel_features, pooled
from tests.cssl_core.train.fixtures import micro_model, structured_images


@pytest.fixture
def slices_file(tmp_path) -> np.ndarray:
    slices = np.round(structured_images(12, 32, seed=2) * 255).astype(np.uint8)
    np.save(tmp_path / "slices.npy", slices)
    return np.load(tmp_path / "slices.npy", mmap_mode="r")


def test_tokens_match_the_models_own_encoding_of_the_requested_rows(slices_file):
    model = micro_model(seed=0)
    model.train()
    rows = np.array([7, 0, 3, 11, 5])
    tokens = extract_tokens(model, slices_file, rows, batch=2)
    assert model.training  # mode restored
    assert tokens.dtype == np.float32 and tokens.shape == (5, model.config.num_patches, model.config.hidden_size)
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(slices_file[rows], dtype=np.float32) / 255.0).unsqueeze(1)
        np.testing.assert_allclose(tokens, model.encode(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(pooled(tokens), model.pooled(x).numpy(), atol=1e-5)


def test_float16_slices_are_taken_as_already_scaled(slices_file):
    as_float16 = (np.asarray(slices_file, dtype=np.float32) / 255.0).astype(np.float16)
    images = as_images(as_float16, [1, 2])
    np.testing.assert_allclose(images.numpy(), as_images(slices_file, [1, 2]).numpy(), atol=1e-3)
    with pytest.raises(ValueError):
        as_images(np.zeros((2, 4, 4), dtype=np.int32), [0])


def test_wrong_slice_size_is_rejected():
    with pytest.raises(ValueError, match="px"):
        extract_tokens(micro_model(), np.zeros((2, 16, 16), dtype=np.uint8), [0, 1])


def test_pixel_features_are_area_averages(slices_file):
    rows = [4, 9]
    features = pixel_features(slices_file, rows, size=16, batch=1)
    assert features.shape == (2, 256) and features.dtype == np.float32
    blocks = np.asarray(slices_file[rows], dtype=np.float64).reshape(2, 16, 2, 16, 2).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(features, blocks.reshape(2, 256), atol=1e-6)
