"""The downstream probes by name (`PROBES`), each behind one signature, so the evaluate stage loops over names.

A probe reads its own view of a task's rows: the linear probe pooled tokens, the attentive probe the tokens,
the token probe per-token lesion labels, the kNN probe pooled tokens, the fine-tune probe the images and
the encoder itself (with its budget), the reference probe raw pixels. `ProbeData` carries all of them,
row-aligned, and every registered probe is called as `probe(data, train_idx, test_idx, seed)`. Inputs only
some probes read (lesion masks, pixels, images and model) are optional: a probe lists them in `needs` so the
caller builds them only when a probe it runs reads them. Adding a probe = its function in probes.py (or a
module of its own), its name in probe_names.py and one entry below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cssl_core.evaluation.finetuning_probe import finetune_probe
from cssl_core.evaluation.probe_names import REFERENCE_PROBE, FinetuneBudget
from cssl_core.evaluation.probes import attentive_probe, knn_probe, linear_probe, token_probe

# the ProbeData fields a task may lack or a caller may skip
OPTIONAL_INPUTS = ("token_labels", "pixels", "images", "model")


@dataclass(frozen=True)
class ProbeData:
    """One labelled task's inputs to every probe, row-aligned (row i of each is slice i of the task)."""

    labels: np.ndarray  # (n,) binary slice labels
    tokens: np.ndarray  # (n, T, C) frozen encoder tokens
    features: np.ndarray  # (n, C) pooled tokens
    token_labels: np.ndarray | None = None  # (n, T) lesion overlap per token; None: the task has no masks
    pixels: np.ndarray | None = None  # (n, P) raw downsampled pixels; None: not built (no probe needs them)
    images: torch.Tensor | None = None  # (n, 1, S, S) in [0, 1] (features.as_images); None: not built
    model: nn.Module | None = None  # the encoder the tokens came from, for fine-tuning (copied, never changed)
    finetune: FinetuneBudget = FinetuneBudget()  # the finetune probe's budget (eval.finetune)


Metrics = dict[str, float]
ProbeFit = Callable[[ProbeData, np.ndarray, np.ndarray, int], Metrics | None]


@dataclass(frozen=True)
class Probe:
    """A registered probe: `fit` trains on `train_idx` rows and returns the metrics on `test_idx` rows, or None
    when the task lacks an input the probe needs (no masks for the token probe: no result, not a failure)."""

    name: str
    fit: ProbeFit
    needs: frozenset[str] = frozenset()  # optional ProbeData fields it reads (OPTIONAL_INPUTS)

    def __call__(self, data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics | None:
        return self.fit(data, train_idx, test_idx, seed)


def _linear(data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics:
    features, labels = data.features, data.labels
    return linear_probe(features[train_idx], labels[train_idx], features[test_idx], labels[test_idx], seed)


def _attentive(data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics:
    tokens, labels = data.tokens, data.labels
    return attentive_probe(tokens[train_idx], labels[train_idx], tokens[test_idx], labels[test_idx], seed)


def _token(data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics | None:
    tokens, token_labels = data.tokens, data.token_labels
    if token_labels is None:
        return None
    return token_probe(tokens[train_idx], token_labels[train_idx], tokens[test_idx], token_labels[test_idx], seed)


def _knn(data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics:
    features, labels = data.features, data.labels  # nothing fitted: `seed` has nothing to drive
    return knn_probe(features[train_idx], labels[train_idx], features[test_idx], labels[test_idx])


def _finetune(data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics:
    images, model, labels = data.images, data.model, data.labels
    if images is None or model is None:
        raise ValueError("the 'finetune' probe needs ProbeData.images (features.as_images) and ProbeData.model")
    train, test = torch.as_tensor(np.asarray(train_idx)), torch.as_tensor(np.asarray(test_idx))
    return finetune_probe(model, images[train], labels[train_idx], images[test], labels[test_idx], seed, data.finetune)


def _pixels(data: ProbeData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> Metrics:
    pixels, labels = data.pixels, data.labels
    if pixels is None:
        raise ValueError(f"the {REFERENCE_PROBE!r} probe needs ProbeData.pixels (pixel_features of the task's rows)")
    return linear_probe(pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx], seed)


# the names of probe_names.PROBE_NAMES, in their order, then its REFERENCE_PROBE
PROBES: dict[str, Probe] = {
    probe.name: probe
    for probe in (
        Probe("linear", _linear),
        Probe("attentive", _attentive),
        Probe("token", _token, needs=frozenset({"token_labels"})),
        Probe("knn", _knn),
        Probe("finetune", _finetune, needs=frozenset({"images", "model"})),
        Probe(REFERENCE_PROBE, _pixels, needs=frozenset({"pixels"})),
    )
}


def get_probe(name: str) -> Probe:
    """The probe registered as `name`; an unknown name lists the registered ones."""
    if name not in PROBES:
        raise KeyError(f"unknown probe {name!r}; registered: {sorted(PROBES)}")
    return PROBES[name]


def needed_inputs(names: Iterable[str]) -> frozenset[str]:
    """The optional ProbeData fields the probes `names` read (each name checked against the registry)."""
    return frozenset().union(*(get_probe(name).needs for name in names))
