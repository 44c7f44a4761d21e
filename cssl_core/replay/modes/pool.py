"""`pool`: tokens averaged over `pool` x `pool` blocks of the token grid before storing."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cssl_core.replay.modes.base import BufferMode, Released, pool_tokens, singles


class PoolMode(BufferMode):
    """Stores coarser rows (a token then covers a patch x pool square); the upper blocks replay fewer tokens (they
    take any token count: position lives in the tokens since the patch embedding); the attacker pools its own
    latents the same way."""

    name: ClassVar[str] = "pool"

    def release(self, latents: np.ndarray, patients: np.ndarray, config: Any, seed: int) -> Released:
        import torch

        pooled = pool_tokens(torch.from_numpy(latents), config.pool).numpy()
        return Released(pooled.astype(np.float16), None, None, singles(len(latents)))

    def attacker_token_pool(self, config: Any) -> int:
        return int(config.pool)
