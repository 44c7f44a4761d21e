"""The contract between the stage runner and a continual strategy (mammoth's ContinualModel, reduced).

The runner owns everything generic: devices, autocast, the optimiser and schedule, checkpoints, timing.
A strategy owns only what differs between methods: which losses a batch produces (`observe`) and what
happens around a stage (`begin_stage` / `end_stage`: take a teacher snapshot, load a buffer, ...). Keeping
the optimiser step out of `observe` is what lets one runner give every strategy the same budget, AMP and
resume behaviour, so that comparisons between strategies measure the strategies.

Options are validated up front, solo-learn style: a typo in a params block is an error at construction,
not a default silently used for a whole run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from cssl_core.strategies.options import resolve_options

PLAIN_FIRST_STAGE = "plain-mae"  # the training identity of a first stage that every strategy trains alike


@dataclass
class StageContext:
    """What a strategy may use during one stage. `generator` drives masking; the runner reseeds it per epoch.
    `new_stage_size`: slices in the new stage's train set (joint sizes its replay batch by it)."""

    stage_index: int
    stage_name: str
    model: nn.Module
    teacher: nn.Module | None = None
    replay: Any | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    generator: torch.Generator | None = None
    epoch: int = 0
    new_stage_size: int | None = None
    rank: int = 0  # under torchrun: this process's rank and the number of processes (1: a plain run)
    world_size: int = 1


class Strategy:
    """Base class: subclasses set `name`, `keeps_raw_images`, `required_options`, `default_options` and
    implement `observe`. Options = required ones (no default) + optional ones (with defaults)."""

    name: ClassVar[str] = "base"
    keeps_raw_images: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = ()
    default_options: ClassVar[Mapping[str, Any]] = {}

    # What the stage runner does around the strategy. Declared here, not decided by the runner, so that a new
    # strategy is one file: the runner reads these and never switches on strategy names.
    buffer_kind: ClassVar[str] = "none"  # none | latent | image: what export@k writes after stage k
    buffer_features: ClassVar[bool] = False  # DER: store model.pooled of each buffered image (float16) too
    buffer_selection: ClassVar[str | None] = None  # forced selector (medcoss: kmeans); None: replay.selection
    buffer_budget: ClassVar[float | int | None] = None  # forced budget (joint: 1.0 = all); None: replay.budget
    freezes_lower: ClassVar[bool] = False  # runner freezes the lower blocks on stages after the first
    needs_teacher: ClassVar[bool] = False  # runner passes a frozen copy of the previous model as context.teacher
    # On a first stage there is nothing to replay and no teacher: every registered strategy then trains plain
    # MAE, bit for bit (tests/cssl_core/strategies/test_first_stage.py trains each and compares). A strategy
    # whose first stage differs sets this False; the NoPeek penalty, which acts on the first stage, keeps its own.
    plain_first_stage: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = resolve_options(self.name, self.required_options, self.default_options, options)
        self._context: StageContext | None = None

    @property
    def freeze_lower_after_first(self) -> bool:
        """Whether the runner must call model.freeze_lower() on stages after the first.

        An instance property, not the class attribute alone: the `unfreeze_lower` option (an ablation that
        accepts stale stored latents) overrides the strategy's default.
        """
        return self.freezes_lower and not self.options.get("unfreeze_lower", False)

    def training_identity(self, stage_index: int) -> dict[str, Any]:
        """What about the strategy decides the weights a stage trains: the checkpoint key's strategy half.

        Its name and options, except on a first stage of a strategy that trains plain MAE there: then every
        such strategy has the same identity, so a comparison trains stage 1 once per seed and every strategy
        reuses it (cssl_core.train.store's shared directory), instead of retraining identical weights.
        """
        if stage_index == 0 and self.plain_first_stage:
            return {"strategy": PLAIN_FIRST_STAGE, "strategy_options": {}}
        return {"strategy": self.name, "strategy_options": dict(sorted(self.options.items()))}

    @property
    def replays(self) -> bool:
        """Whether these options replay a buffer at all (latent_replay's `replay: false` ablation does not)."""
        return self.buffer_kind != "none"

    @property
    def kept_buffer_kind(self) -> str:
        """What export@k writes after a stage: `buffer_kind`, or "none" when the options never replay it, so
        that an ablation without replay neither stores samples nor is charged their bytes in the comparison."""
        return self.buffer_kind if self.replays else "none"

    @property
    def context(self) -> StageContext:
        if self._context is None:
            raise RuntimeError(f"strategy {self.name!r} used outside a stage: call begin_stage(context) first")
        return self._context

    def begin_stage(self, context: StageContext) -> None:
        """Called once before the first epoch of a stage (also when the stage resumes after a crash)."""
        self._context = context

    def observe(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch (already on the device); must include "total", the one optimised."""
        raise NotImplementedError

    def end_stage(self, context: StageContext) -> None:
        """Called once after the last epoch of a stage."""

    def trainable_modules(self) -> list[nn.Module]:
        """Modules owned by the strategy (projectors, heads) that the runner optimises with the model."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Strategy state that must survive a crash mid-stage (counters, running statistics)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state but the checkpoint has {sorted(state)}")
