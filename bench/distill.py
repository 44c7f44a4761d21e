"""Cost of the distillation terms relative to a transformer forward+backward, on CPU (2 threads).

Prints one JSON line. For each (B, N) with C = 192: median ms of forward+backward of every WKD mode (the
student requires grad, the teacher does not), of BKE alone (forward only: it has no gradient), of gaussian
WKD on BKE targets (the default training combination), and of a 2-layer TransformerEncoder (width 192,
3 heads, MLP 768) forward+backward on the same (B, N, C) tensor as the yardstick.

Timings are interleaved: every round times the yardstick and each case once, and ``ratio`` is the median
over rounds of case_ms / yardstick_ms of the *same* round, so that load from other processes on a shared
machine hits numerator and denominator alike. The load average is recorded with the figures. A tiny ViT
training step (12 blocks + MAE decoder) costs several times the 2-layer stack, so the ratio overstates the
share of a real step.

Usage: python bench/distill.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from cssl_core.distill import bke, wkd_loss

C = 192
SHAPES = [(32, 36), (32, 144), (64, 36), (64, 144)]
CASES: dict[str, tuple[str | None, bool, dict[str, object]]] = {
    "gaussian": ("gaussian", False, {}),
    "ot_emd": ("ot", False, {"solver": "emd"}),
    "ot_sinkhorn": ("ot", False, {"solver": "sinkhorn"}),
    "sliced": ("sliced", False, {"n_projections": 64}),
    "sliced_tokens": ("sliced", False, {"n_projections": 64, "over": "tokens"}),
    "bke": (None, True, {}),
    "gaussian+bke": ("gaussian", True, {}),
}


def _timed_ms(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _case_step(student: torch.Tensor, teacher: torch.Tensor, mode: str | None, refine: bool, options: dict):
    def step() -> None:
        target = bke(teacher) if refine else teacher
        if mode is None:
            return
        wkd_loss(student, target, mode, **options).backward()
        student.grad = None

    return step


def _transformer_step(x: torch.Tensor) -> Callable[[], None]:
    layer = torch.nn.TransformerEncoderLayer(C, nhead=3, dim_feedforward=4 * C, batch_first=True, dropout=0.0)
    stack = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def step() -> None:
        stack(x).square().mean().backward()
        stack.zero_grad(set_to_none=True)

    return step


def _bench_shape(batch: int, tokens: int, repeats: int, warmup: int = 3) -> dict[str, object]:
    student = torch.randn(batch, tokens, C, requires_grad=True)
    # the student starts as a copy of the teacher; a small offset stands for a few steps of drift
    teacher = student.detach() + 0.3 * torch.randn(batch, tokens, C)
    base = _transformer_step(torch.randn(batch, tokens, C, requires_grad=True))
    steps = {name: _case_step(student, teacher, *spec) for name, spec in CASES.items()}
    for _ in range(warmup):
        base()
        for step in steps.values():
            step()
    base_ms: list[float] = []
    case_ms: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        base_ms.append(_timed_ms(base))
        for name, step in steps.items():
            case_ms[name].append(_timed_ms(step))
    row: dict[str, object] = {"B": batch, "N": tokens, "transformer2_ms": round(statistics.median(base_ms), 3)}
    for name, values in case_ms.items():
        ratios = [v / b for v, b in zip(values, base_ms, strict=True)]
        row[name] = {"ms": round(statistics.median(values), 3), "ratio": round(statistics.median(ratios), 4)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    results = [_bench_shape(batch, tokens, args.repeats) for batch, tokens in SHAPES]
    record = {
        "bench": "distill",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "torch": torch.__version__,
        "C": C,
        "repeats": args.repeats,
        "baseline": "2x TransformerEncoderLayer(192, 3 heads, mlp 768) fwd+bwd",
        "results": results,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
