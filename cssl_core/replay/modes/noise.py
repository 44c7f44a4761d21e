"""`noise`: Gaussian noise on every stored latent, sd = `noise_sd` x each channel's sd over rows and tokens."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cssl_core.replay.modes.base import BufferMode, Released, singles


class NoiseMode(BufferMode):
    """Stores noisy rows; replay reads them as stored; the attacker adds noise of the same relative sd to its own
    latents before fitting (it knows noise_sd). No formal guarantee: the noise is not calibrated to a
    sensitivity, and the audit's membership figures say what it buys."""

    name: ClassVar[str] = "noise"

    def release(self, latents: np.ndarray, patients: np.ndarray, config: Any, seed: int) -> Released:
        channel_sd = latents.std(axis=(0, 1), keepdims=True)
        noise = np.random.default_rng([seed, 1]).standard_normal(latents.shape).astype(np.float32)
        noisy = latents + config.noise_sd * channel_sd * noise
        return Released(noisy.astype(np.float16), None, None, singles(len(latents)))

    def attacker_noise_sd(self, config: Any) -> float:
        return float(config.noise_sd)
