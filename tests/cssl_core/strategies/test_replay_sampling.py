from __future__ import annotations

import numpy as np
import pytest
import torch

from cssl_core.replay.buffer import load_buffer, save_buffer
from cssl_core.strategies import build_strategy
from cssl_core.strategies.replay_sampling import (
    draw_indices,
    fetch_features,
    fetch_images,
    fetch_latents,
    resolve_buffer,
    sample_images,
)
from tests.cssl_core.strategies.helpers import (
    buffer_for,
    image_buffer,
    latent_buffer,
    micro_model,
    new_batch,
    start,
    teacher_of,
)


def test_draws_are_sorted_and_deterministic_given_the_generator_seed():
    first = draw_indices(50, 16, torch.Generator().manual_seed(3))
    again = draw_indices(50, 16, torch.Generator().manual_seed(3))
    other = draw_indices(50, 16, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.dtype == torch.int64 and torch.equal(first, first.sort().values)
    assert int(first.min()) >= 0 and int(first.max()) < 50
    with pytest.raises(ValueError, match="empty"):
        draw_indices(0, 4, None)


def test_sample_images_is_deterministic_and_matches_the_stored_slices():
    buffer = image_buffer(12)
    images, idx = sample_images(buffer, 5, torch.Generator().manual_seed(0), torch.device("cpu"))
    images2, idx2 = sample_images(buffer, 5, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(images, images2) and torch.equal(idx, idx2)
    assert images.shape == (5, 1, 32, 32) and images.dtype == torch.float32
    expected = torch.from_numpy(buffer.data[idx.numpy()]).float() / 255
    assert torch.equal(images[:, 0], expected) and 0.0 <= float(images.min()) <= float(images.max()) <= 1.0


def test_fetch_from_memory_mapped_buffers(tmp_path):
    model = micro_model()
    images = image_buffer(8, model=model)
    latents = latent_buffer(model, 8)
    save_buffer(images, tmp_path / "img")
    save_buffer(latents, tmp_path / "lat")
    img, lat = load_buffer(tmp_path / "img"), load_buffer(tmp_path / "lat")
    assert isinstance(img.data, np.memmap)
    idx = torch.tensor([5, 1, 1])
    cpu = torch.device("cpu")
    assert torch.equal(fetch_images(img, idx, cpu), fetch_images(images, idx, cpu))
    z = fetch_latents(lat, idx, cpu)
    assert z.dtype == torch.float32 and z.shape == (3, 16, 32)
    assert torch.equal(z, torch.from_numpy(latents.data[[5, 1, 1]]).float())
    assert fetch_features(img, idx, cpu).shape == (3, 32)
    with pytest.raises(ValueError, match="no features"):
        fetch_features(image_buffer(4), idx[:1], cpu)


def test_resolve_buffer():
    buffer = image_buffer(4)
    assert resolve_buffer(None, "image", "er") is None
    assert resolve_buffer([], "image", "er") is None
    assert resolve_buffer(buffer, "image", "er") is buffer
    assert len(resolve_buffer([buffer, image_buffer(3)], "image", "er")) == 7
    with pytest.raises(ValueError, match="replays a 'latent' buffer"):
        resolve_buffer(buffer, "latent", "latent_replay")
    with pytest.raises(TypeError, match="ReplayBuffer"):
        resolve_buffer(np.zeros((2, 4, 4)), "image", "er")


@pytest.mark.parametrize("name", ["er", "der", "medcoss", "joint", "latent_replay"])
def test_every_replay_strategy_opens_a_step_with_the_mae_masks_then_the_replay_rows(name, monkeypatch):
    model = micro_model()
    strategy = build_strategy(name, {"replay_batch_size": 5})
    if strategy.freeze_lower_after_first:
        model.freeze_lower()
    teacher = teacher_of(model) if strategy.needs_teacher else None
    context = start(strategy, model, replay=buffer_for(strategy, model, n=12), teacher=teacher, seed=3)
    reference = torch.Generator().set_state(context.generator.get_state())
    seen = {}
    with_replay = type(strategy).with_replay

    def spy(self, mae, indices):
        seen.update(mae=mae, indices=indices)
        return with_replay(self, mae, indices)

    monkeypatch.setattr(type(strategy), "with_replay", spy)
    batch = new_batch()
    losses = strategy.observe(batch)
    expected_mae, _ = model.mae_loss(batch["image"], mask_ratio=strategy.options["mask_ratio"], generator=reference)
    assert losses["mae"] is seen["mae"] and torch.equal(seen["mae"], expected_mae)
    assert torch.equal(seen["indices"], draw_indices(12, 5, reference))  # drawn right after the masks
    assert strategy.n_replay_rows == 12
