"""The fine-tuning probe: a copy of the encoder plus a small head, trained end to end for a fixed budget.

Why: frozen probes (linear, attentive, token) ask what the encoder already exposes; on the demo data they
sit at the random encoder's level, so they cannot tell strategies apart. MAE-style encoders are meant to be
fine-tuned downstream (the seed papers report fine-tuning), and a pretrained initialisation shows its value
as how far a short, fixed training budget gets from it. The budget (eval.finetune: steps, batch size, two
learning rates) is the same for every stage, task, fold and fraction, so R matrices compare starting points.

The caller's model is never changed: every call trains a deep copy. The result depends only on the inputs
and `seed` (head initialisation under a forked RNG, batches from a seeded generator), on CPU bit for bit.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from cssl_core.device import device_of
from cssl_core.evaluation.probe_names import FinetuneBudget
from cssl_core.evaluation.probes import _binary_labels, binary_metrics

SCORE_BATCH = 64  # test slices per forward pass when scoring


class FinetuneClassifier(nn.Module):
    """encoder (the MAE's full encoder on the unmasked slice, `model.encode`) -> token mean -> LayerNorm ->
    Linear -> one logit. The LayerNorm puts pooled features of any encoder (random, or pretrained with its
    own scale) on one scale, so one head learning rate fits every stage."""

    def __init__(self, model: nn.Module, width: int) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.encode(images).mean(dim=1)).squeeze(-1)


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters `model.encode` uses (patch embedding, blocks, final norm), never the MAE decoder's:
    only these are trained, so AdamW keeps no state for a decoder the classifier never runs."""
    modules = [model.patch_embedding, *model.blocks, model.norm]
    return [p for module in modules for p in module.parameters()]


def _as_images(images: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4:
        shape = tuple(images.shape)
        raise ValueError(f"{what} must be (n, 1, S, S) images in [0, 1] (features.as_images), got {shape}")
    return images


@torch.no_grad()
def _scores(classifier: FinetuneClassifier, images: torch.Tensor, device: torch.device) -> np.ndarray:
    classifier.eval()
    chunks = [
        torch.sigmoid(classifier(images[start : start + SCORE_BATCH].to(device))).float().cpu()
        for start in range(0, len(images), SCORE_BATCH)
    ]
    return torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)


def finetune_probe(
    model: nn.Module,
    train_images: torch.Tensor | np.ndarray,
    train_y: np.ndarray,
    test_images: torch.Tensor | np.ndarray,
    test_y: np.ndarray,
    seed: int,
    budget: FinetuneBudget = FinetuneBudget(),
    steps: int | None = None,
) -> dict[str, float]:
    """Fine-tune a copy of `model`'s encoder with a new head on the training slices; metrics on the test ones.

    `budget.steps` AdamW steps (encoder at `budget.lr`, head at `budget.head_lr`) on batches of
    `budget.batch_size` slices drawn with replacement, each class with half the probability mass: tasks are
    imbalanced (a few lesion slices per patient) and a few-shot side may hold a handful of positives, so
    balanced sampling rather than a loss weight keeps every batch informative. `steps` overrides the
    budget's (0: score the untrained head, the reference a test compares against). Images are (n, 1, S, S)
    in [0, 1] as features.as_images makes them; training runs on the model's device. Lower blocks frozen by
    latent replay are unfrozen in the copy: this is end-to-end fine-tuning. Single-class training sides get
    the linear probe's treatment (constant prediction, AUC nan).
    """
    train_images, test_images = _as_images(train_images, "train_images"), _as_images(test_images, "test_images")
    train_y, test_y = _binary_labels(train_y, "train_y"), _binary_labels(test_y, "test_y")
    if len(train_images) != len(train_y) or len(test_images) != len(test_y):
        raise ValueError(
            f"images and labels differ in rows: {len(train_images)} vs {len(train_y)} (train), "
            f"{len(test_images)} vs {len(test_y)} (test)"
        )
    steps = budget.steps if steps is None else steps
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    n_pos = int(train_y.sum())
    n_neg = len(train_y) - n_pos
    if n_pos == 0 or n_neg == 0:
        metrics = binary_metrics(test_y, np.full(len(test_y), 1.0 if n_pos else 0.0))
        metrics["auc"] = float("nan")
        return metrics

    device = device_of(model)
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        encoder = copy.deepcopy(model)
        if getattr(encoder, "_lower_frozen", False):
            encoder._lower_frozen = False
        encoder_params = encoder_parameters(encoder)
        for param in encoder.parameters():
            param.requires_grad_(False)
        for param in encoder_params:
            param.requires_grad_(True)
        classifier = FinetuneClassifier(encoder, encoder.norm.normalized_shape[0]).to(device)
        optimizer = torch.optim.AdamW(
            [
                {"params": encoder_params, "lr": budget.lr},
                {"params": list(classifier.head.parameters()), "lr": budget.head_lr},
            ]
        )
        generator = torch.Generator().manual_seed(seed)
        weights = torch.from_numpy(np.where(train_y == 1, 0.5 / n_pos, 0.5 / n_neg))
        draws = steps * budget.batch_size
        batches = torch.multinomial(weights, draws, replacement=True, generator=generator) if draws else weights[:0]
        targets = torch.from_numpy(train_y.astype(np.float32))
        loss_fn = nn.BCEWithLogitsLoss()
        classifier.train()
        for batch in batches.long().view(steps, budget.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(classifier(train_images[batch].to(device)), targets[batch].to(device))
            loss.backward()
            optimizer.step()
        scores = _scores(classifier, test_images, device)
    return binary_metrics(test_y, scores)
