"""Re-export for tasks/pretrain.py only, until it imports it from cssl_core itself (then delete this file).

Buffer-directory I/O lives in cssl_core/replay/directory.py.
"""

from cssl_core.replay.directory import read_buffer

__all__ = ["read_buffer"]
