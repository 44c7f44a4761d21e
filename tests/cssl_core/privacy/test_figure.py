from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from cssl_core.privacy.figure import draw_reconstructions


def test_figure_is_a_png_grid_and_leaves_nothing_else_behind(tmp_path, blobs):
    truth = blobs(6, seed=0)
    path = draw_reconstructions(
        tmp_path / "figs" / "privacy.png", truth, {"baseline": np.full_like(truth, 0.3), "ridge": truth}, max_rows=2
    )
    image = imread(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.shape[0] > 100 and image.shape[1] > image.shape[0]  # 3 columns wider than 2 rows are tall
    assert sorted(p.name for p in path.parent.iterdir()) == ["privacy.png"]


def test_figure_refuses_misaligned_reconstructions(tmp_path, blobs):
    truth = blobs(4, seed=0)
    with pytest.raises(ValueError, match="align"):
        draw_reconstructions(tmp_path / "f.png", truth, {"ridge": truth[:2]})
    with pytest.raises(ValueError, match="at least one"):
        draw_reconstructions(tmp_path / "f.png", truth, {})
    assert not (tmp_path / "f.png").exists()
