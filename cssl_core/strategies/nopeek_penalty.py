"""The `adversarial` replay privacy mode: any strategy, plus a NoPeek penalty on the lower encoder.

A latent buffer stores z = model.lower(x); the privacy audit inverts z back to slices. NoPeek (Vepakomma et al.
2020) trains the encoder that makes z with an extra term, the distance correlation between the slices and z
(`cssl_core.privacy.distance_correlation`), so that z keeps what the upper blocks need and loses what an
inversion needs: total = strategy total + weight * dCor(x, z).

A wrapper rather than a strategy option, because the penalty is about what the buffer leaks, not about how a
strategy fights forgetting: it composes with every strategy (latent_replay first of all) and is switched by
`replay.privacy.mode`, not by each strategy's params block. The wrapped strategy decides everything else
(its losses, its buffer kind, freezing, teacher), so the wrapper forwards all of it.

The penalty applies only while the lower blocks train (`not model.lower_frozen`). With latent_replay that is
stage 1 only: later stages freeze the lower blocks so that stored latents stay valid, and a frozen encoder's
latents cannot be made any less invertible, so the term would cost a forward pass and change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cssl_core.privacy.distance_correlation import distance_correlation
from cssl_core.strategies.base import StageContext, Strategy

WEIGHT_OPTION = "nopeek_weight"  # the key the weight adds to `options` (checkpoint fingerprints read it)
WEIGHT_PARAM = "replay.privacy.adversarial_weight"
TERM = "nopeek"  # the loss term's name: "loss/nopeek" in the epoch metrics


def _forwarded(attribute: str) -> property:
    return property(lambda self: getattr(self.inner, attribute), doc=f"The wrapped strategy's `{attribute}`.")


class NoPeekPenalty(Strategy):
    """`inner`'s losses plus weight * dCor(slice, model.lower(slice)) while the lower blocks are trainable.

    `name` is "<inner>+nopeek" and `options` are the inner options plus `nopeek_weight`, so that
    `training_fingerprint` tells a penalised run (and each weight) from a plain one and never resumes one
    from the other's checkpoint. What the runner and export read about the strategy (buffer kind, freezing,
    teacher, ...) is the inner strategy's.
    """

    keeps_raw_images = _forwarded("keeps_raw_images")
    required_options = _forwarded("required_options")
    default_options = _forwarded("default_options")
    buffer_kind = _forwarded("buffer_kind")
    buffer_features = _forwarded("buffer_features")
    buffer_selection = _forwarded("buffer_selection")
    buffer_budget = _forwarded("buffer_budget")
    freezes_lower = _forwarded("freezes_lower")
    needs_teacher = _forwarded("needs_teacher")
    freeze_lower_after_first = _forwarded("freeze_lower_after_first")
    replays = _forwarded("replays")
    kept_buffer_kind = _forwarded("kept_buffer_kind")
    context = _forwarded("context")

    def __init__(self, inner: Strategy, weight: float = 1.0) -> None:
        # no Strategy.__init__: the options are the inner strategy's, already validated by it
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(
                f"{WEIGHT_PARAM} must be a number > 0, got {weight!r}: set it to the penalty's weight "
                "(1.0 is NoPeek's usual start) or choose another replay.privacy.mode"
            )
        if isinstance(inner, NoPeekPenalty):
            raise ValueError(f"strategy {inner.name!r} already has the NoPeek penalty: wrap it once")
        if WEIGHT_OPTION in inner.options:
            raise ValueError(f"strategy {inner.name!r} has an option named {WEIGHT_OPTION!r}, which the penalty adds")
        self.inner = inner
        self.weight = float(weight)

    def __getattr__(self, attribute: str) -> Any:
        # only reached for attributes the wrapper lacks: a strategy's own state (latent_replay's `latents`, ...)
        if attribute == "inner":  # not set yet (copy / unpickling): no recursion through self.inner
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.inner.name}+{TERM}"

    @property
    def options(self) -> dict[str, Any]:  # type: ignore[override]
        return {**self.inner.options, WEIGHT_OPTION: self.weight}

    def training_identity(self, stage_index: int) -> dict[str, Any]:
        """The penalty changes the weights on every stage where the lower blocks train, the first included."""
        return {"strategy": self.name, "strategy_options": dict(sorted(self.options.items()))}

    def begin_stage(self, context: StageContext) -> None:
        self.inner.begin_stage(context)

    def end_stage(self, context: StageContext) -> None:
        self.inner.end_stage(context)

    def trainable_modules(self) -> list[nn.Module]:
        return self.inner.trainable_modules()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()  # the penalty itself keeps no state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def observe(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        losses = dict(self.inner.observe(batch))
        if "total" not in losses:
            raise KeyError(f"strategy {self.inner.name!r} returned {sorted(losses)} without 'total'")
        model = self.context.model
        if model.lower_frozen:
            return losses
        images = batch["image"]
        # the whole unmasked slice, as export encodes it for the buffer (not the masked tokens MAE trains on)
        latents = model.lower(images)
        dcor = distance_correlation(images.flatten(1), latents.flatten(1))
        losses[TERM] = dcor
        losses["total"] = losses["total"] + self.weight * dcor
        return losses


def with_privacy_penalty(strategy: Strategy, privacy: Mapping[str, Any] | Any) -> Strategy:
    """`strategy` wrapped in NoPeekPenalty when the buffer mode of `privacy` (the replay.privacy block, raw or as
    the typed ReleaseConfig) acts during training (cssl_core.replay.modes: `adversarial`, weighted by its
    `adversarial_weight`); `strategy` itself for every other mode."""
    from cssl_core.replay.release import ReleaseConfig

    if isinstance(privacy, Mapping):
        privacy = ReleaseConfig.from_dict(dict(privacy))
    weight = privacy.training_penalty_weight
    return strategy if weight is None else NoPeekPenalty(strategy, weight)
