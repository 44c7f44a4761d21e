"""Replay buffers for continual SSL: which samples of a stage to keep (selection) and how they are stored (buffer)."""

from cssl_core.replay.buffer import ReplayBuffer, buffer_nbytes, concat_buffers, load_buffer, save_buffer
from cssl_core.replay.selection import SELECTORS, resolve_budget, select

__all__ = [
    "SELECTORS",
    "ReplayBuffer",
    "buffer_nbytes",
    "concat_buffers",
    "load_buffer",
    "resolve_budget",
    "save_buffer",
    "select",
]
