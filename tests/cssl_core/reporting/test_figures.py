"""The shared figure helpers: history parsing, the back-to-back loss series, buffer features, and PNGs written
on a headless backend; importing the module draws in neither matplotlib nor scikit-learn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.reporting.figures import (
    DPI,
    MIN_EMBEDDED_ITEMS,
    buffer_features,
    draw_buffer_embedding,
    figure,
    heatmap,
    parse_history,
    stages_back_to_back,
)
from tests.helpers import REPO_ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_history_rows_become_floats_and_empty_cells_nan():
    rows = parse_history("epoch,loss/mae,val/mae\n1,1.5,\n2,0.5,0.25\n")
    assert rows[1] == {"epoch": 2.0, "loss/mae": 0.5, "val/mae": 0.25}
    assert rows[0]["loss/mae"] == 1.5 and np.isnan(rows[0]["val/mae"])


def test_stages_run_back_to_back_with_nan_where_a_stage_lacks_the_column():
    histories = {"s1": [{"val/mae": 1.0}, {"val/mae": 0.5}], "s2": [{"loss/mae": 2.0}]}
    series = stages_back_to_back(histories, "val/mae")
    np.testing.assert_array_equal(series[:2], [1.0, 0.5])
    assert len(series) == 3 and np.isnan(series[2])


def _buffer(kind: str, n: int) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    shape = (n, 4, 8) if kind == "latent" else (n, 16, 16)
    stage = np.array(["s1", "s2"] * (n // 2) + ["s1"] * (n % 2))
    return ReplayBuffer(kind, rng.normal(size=shape).astype(np.float16), stage, np.array(["lung"] * n))


def test_buffer_features_pool_latent_tokens_and_thin_images_4x():
    latent, image = _buffer("latent", 6), _buffer("image", 6)
    np.testing.assert_allclose(buffer_features(latent), np.asarray(latent.data, dtype=np.float32).mean(axis=1))
    features = buffer_features(image)
    assert features.shape == (6, 16) and features[0, 1] == np.float32(image.data[0, 0, 4])


def test_heatmap_writes_a_png_at_the_shared_dpi(tmp_path: Path):
    path = tmp_path / "R.png"
    heatmap(path, np.array([[0.5, np.nan], [0.25, 0.75]]), ["s1", "s2"], ["t1", "t2"], "title")
    assert path.read_bytes()[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(path) as image:  # figsize (1.2 + 1.1 * 2, 1.0 + 0.8 * 2) inches at DPI
        assert image.size == (round(3.4 * DPI), round(2.6 * DPI))


def test_a_buffer_too_small_to_embed_is_skipped_and_a_failing_figure_leaves_no_file(tmp_path: Path):
    with figure(tmp_path / "small.png") as (_, axes):
        assert draw_buffer_embedding(axes[0, 0], _buffer("latent", MIN_EMBEDDED_ITEMS - 1), 0, "t") is False
        assert draw_buffer_embedding(axes[0, 0], None, 0, "t") is False
    assert (tmp_path / "small.png").exists()
    with pytest.raises(RuntimeError, match="boom"), figure(tmp_path / "failed.png"):
        raise RuntimeError("boom")
    assert not (tmp_path / "failed.png").exists()


def test_importing_the_figures_imports_no_matplotlib_or_sklearn():
    code = "import json, sys\nimport cssl_core.reporting.figures\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}
    assert not loaded & {"matplotlib", "sklearn", "torch"}
