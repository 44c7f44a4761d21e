"""Re-exports for tasks/pretrain.py only, until it imports these from cssl_core itself (then delete this file).

The layout lives in cssl_core/layout.py, model I/O in cssl_core/models/io.py.
"""

from cssl_core.layout import StagePaths, stage_paths
from cssl_core.models.io import load_model, save_model

__all__ = ["StagePaths", "load_model", "save_model", "stage_paths"]
