"""Shared by the models/data/train/strategies tests: a micro MAE, structured synthetic slices, and a
windowed-slices directory in the format of docs/data-contracts.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cssl_core.models import MAEConfig, MaskedAutoencoder

MICRO = dict(
    img_size=32,
    patch_size=8,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    mlp_dim=64,
    decoder_hidden_size=32,
    decoder_num_layers=2,
    decoder_num_heads=2,
    decoder_mlp_dim=64,
    split_block=1,
)


def micro_config(**overrides: object) -> MAEConfig:
    return MAEConfig(**{**MICRO, **overrides})


def micro_model(seed: int = 0, **overrides: object) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return MaskedAutoencoder(micro_config(**overrides))


def structured_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size) float32 in [0, 1]: oriented stripes plus a few soft blobs, so that masked patches are
    predictable from visible ones (pure noise would give MAE nothing to learn)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size), dtype=np.float32)
    for i in range(n):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
        image = 0.5 + 0.25 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
            image += 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        out[i] = np.clip(image, 0.0, 1.0)
    return out


def write_windowed(root: Path, n: int = 48, size: int = 32, n_patients: int = 6, seed: int = 0) -> Path:
    """A `data/windowed/<cohort>-<window>/` directory: uint8 slices.npy, index.parquet, meta.json."""
    root.mkdir(parents=True, exist_ok=True)
    slices = np.round(structured_images(n, size, seed) * 255).astype(np.uint8)
    np.save(root / "slices.npy", slices)
    patients = [f"p{i % n_patients:03d}" for i in range(n)]
    pd.DataFrame(
        {
            "patient_key": patients,
            "series_key": [f"s{i % n_patients:03d}" for i in range(n)],
            "slice_index": np.arange(n) // n_patients,
            "z_mm": (np.arange(n) // n_patients).astype(float),
            "has_mask": np.zeros(n, dtype=bool),
        }
    ).to_parquet(root / "index.parquet")
    meta = {"cohort": "synthetic", "window": "lung", "dtype": "uint8", "size": size, "n_slices": n}
    (root / "meta.json").write_text(json.dumps(meta))
    return root
