"""Replay buffers for continual SSL: which samples of a stage to keep (selection) and how they are stored (buffer).

The names are imported on first use (cssl_core._lazy), so that validating params.yaml with
`cssl_core.replay.release.ReleaseConfig` or the selectors' signatures costs no more than those modules.
"""

from cssl_core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cssl_core.replay.buffer": ("ReplayBuffer", "buffer_nbytes", "concat_buffers", "load_buffer", "save_buffer"),
        "cssl_core.replay.selection": ("SELECTORS", "resolve_budget", "select"),
    },
)
