"""Data-parallel training under torchrun: the process group, gradient averaging and global-batch gathers.

One process (no WORLD_SIZE in the environment, or 1) never creates a process group and every helper here is
the identity: the single-process loop stays bit-identical. Under torchrun each rank loads 1/world of every
global batch; gradients are averaged across ranks after backward (one flat all-reduce, like DDP's buckets
without wrapping the model, so strategies keep calling `model.mae_loss` / `model.upper` directly: calls that
bypass a DDP wrapper's forward would silently skip its gradient hooks). Losses that are statistics of the
whole batch (BKE affinities, WKD moments / OT) gather their inputs with `gather_rows`, whose backward sums
every rank's gradient into the rows a rank contributed: the averaged gradient is then the gradient of the
global-batch loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Rank:
    """Where this process sits: rank in [0, world_size), local_rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, the model, metrics and MLflow records."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_from_env() -> Rank:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK); one process when it is absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    return Rank(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_backend(backend: str, device: torch.device) -> str:
    """auto: nccl for CUDA tensors, gloo for CPU ones (nccl cannot reduce CPU tensors)."""
    if backend != "auto":
        return backend
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device, backend: str = "auto") -> Rank:
    """Join the process group torchrun set up (env://), once; returns this process's Rank.

    On CUDA each rank takes the GPU of its local rank. Idempotent: a process group already there is kept.
    """
    where = rank_from_env()
    if not where.distributed:
        return where
    if device.type == "cuda":
        torch.cuda.set_device(where.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=resolve_backend(backend, device))
    return where


def local_device(device: torch.device, where: Rank) -> torch.device:
    """`cuda` (no index) means this rank's GPU under torchrun; any other device is used as given."""
    if where.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", where.local_rank)
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(value: object) -> object:
    """Rank 0's `value` on every rank (the identity in one process)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_module(*modules: nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers (same weights, whatever each rank built)."""
    if not active():
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_gradients(params: list[nn.Parameter]) -> None:
    """Replace each trainable parameter's gradient with its mean over ranks (one flat all-reduce).

    A parameter without a gradient on this rank counts as zero, so ranks always reduce tensors of the same
    size; after the reduction it has one (zero or not) on every rank, which keeps optimiser state aligned.
    """
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor of the same shape on every rank (metrics); the tensor itself in one process."""
    if not active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


class _GatherRows(torch.autograd.Function):
    """All ranks' rows concatenated in rank order; backward sums the gradient over ranks and keeps this rank's
    rows (torch.distributed.nn.functional.all_gather does the same, through all-to-all; this one needs only
    all_gather and all_reduce, which every backend has, and allows ranks different row counts)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
        counts = [int(s.item()) for s in sizes]
        longest = max(counts)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        ctx.start, ctx.stop = sum(counts[:rank]), sum(counts[: rank + 1])
        return torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The global batch (rows of every rank, rank-major) with gradients flowing back to this rank's rows; `x`
    itself in one process. Every rank then computes the same global loss; averaging gradients over ranks
    (`average_gradients`) gives exactly the gradient of that loss."""
    if not active():
        return x
    return _GatherRows.apply(x)
