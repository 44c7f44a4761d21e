"""A micro MAE split at block 2 and in-memory replay buffers for the strategy tests."""

from __future__ import annotations

import copy

import numpy as np
import torch

from cssl_core.models import MAEConfig, MaskedAutoencoder
from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.strategies import StageContext, Strategy
from tests.cssl_core.train.fixtures import structured_images

SIZE = 32


def micro_config() -> MAEConfig:
    return MAEConfig.from_preset(
        "tiny",
        img_size=SIZE,
        patch_size=8,
        hidden_size=32,
        num_layers=4,
        num_heads=2,
        mlp_dim=64,
        decoder_hidden_size=16,
        decoder_num_layers=1,
        decoder_num_heads=2,
        decoder_mlp_dim=32,
        split_block=2,
    )


def micro_model(seed: int = 0) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return MaskedAutoencoder(micro_config())


def teacher_of(model: MaskedAutoencoder, noise: float = 0.05, seed: int = 1) -> MaskedAutoencoder:
    """A frozen 'previous stage' that differs from the student, so distillation terms are not trivially 0."""
    teacher = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
    teacher.requires_grad_(False)
    return teacher.eval()


def new_batch(n: int = 4, seed: int = 100) -> dict[str, torch.Tensor]:
    return {"image": torch.from_numpy(structured_images(n, SIZE, seed)).unsqueeze(1), "row": torch.arange(n)}


def uint8_slices(n: int, seed: int = 7) -> np.ndarray:
    return np.round(structured_images(n, SIZE, seed) * 255).astype(np.uint8)


def image_buffer(
    n: int = 10, windows: tuple[str, ...] = ("lung",), model: MaskedAutoencoder | None = None, seed: int = 7
) -> ReplayBuffer:
    """Raw slices of an earlier stage, windows assigned round robin; DER features from `model` if given."""
    data = uint8_slices(n, seed)
    features = None
    if model is not None:
        with torch.no_grad():
            features = model.pooled(torch.from_numpy(data).float().div(255).unsqueeze(1)).half().numpy()
    window = np.array([windows[i % len(windows)] for i in range(n)])
    return ReplayBuffer("image", data, np.full(n, "s1"), window, features=features)


def latent_buffer(model: MaskedAutoencoder, n: int = 10, seed: int = 7) -> ReplayBuffer:
    images = torch.from_numpy(uint8_slices(n, seed)).float().div(255).unsqueeze(1)
    with torch.no_grad():
        latents = model.lower(images).half().numpy()
    return ReplayBuffer("latent", latents, np.full(n, "s1"), np.full(n, "lung"))


def buffer_for(strategy: Strategy, model: MaskedAutoencoder, n: int = 10) -> ReplayBuffer:
    if strategy.buffer_kind == "latent":
        return latent_buffer(model, n)
    return image_buffer(n, ("lung", "mediastinal"), model if strategy.buffer_features else None)


def start(
    strategy: Strategy,
    model: MaskedAutoencoder,
    replay: object = None,
    teacher: MaskedAutoencoder | None = None,
    seed: int = 0,
    stage_index: int = 0,
) -> StageContext:
    context = StageContext(
        stage_index, f"s{stage_index + 1}", model, teacher=teacher, replay=replay, generator=torch.Generator()
    )
    context.generator.manual_seed(seed)
    strategy.begin_stage(context)
    return context
