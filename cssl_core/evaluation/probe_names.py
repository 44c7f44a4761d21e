"""The downstream probes' names and the fine-tuning budget, importable without torch or scikit-learn.

Why a module of its own: params.yaml is validated as a whole before every stage command (cssl_core.config,
`cssl check`), and `eval.probes` must name registered probes and `eval.finetune` must be a budget the
fine-tune probe can run; the probes themselves (cssl_core.evaluation.registry) need torch and scikit-learn,
which most stages never import. tests/cssl_core/evaluation/test_registry.py holds these names and the
registry together.
"""

from __future__ import annotations

from dataclasses import dataclass

# what eval.probes may list, in the order of cssl_core.evaluation.registry.PROBES
PROBE_NAMES = ("linear", "attentive", "token", "knn", "finetune")
# the reference probe evaluate@init adds on raw downsampled pixels (what pretraining must beat); not selectable
REFERENCE_PROBE = "pixels"


@dataclass(frozen=True)
class FinetuneBudget:
    """The fixed training budget of the `finetune` probe (params.yaml `eval.finetune`), the same for every
    stage, task, fold and fraction so that R matrices compare encoders, not tuning effort.

    `steps` AdamW steps on class-balanced batches of `batch_size` slices; `lr` for the encoder (small: the
    point is to adapt the pretrained features, not to retrain them) and `head_lr` for the new head. The
    defaults cost ~10 s per call on 2 CPU cores with the tiny preset (docs/evaluation.md).
    """

    steps: int = 60
    batch_size: int = 32
    lr: float = 1.0e-4
    head_lr: float = 1.0e-3

    def as_params(self) -> dict[str, int | float]:
        """The block as params.yaml spells it."""
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "head_lr": self.head_lr}
