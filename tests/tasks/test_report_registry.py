"""The registered encoder: any batch size through `models:/cssl-encoder@best`, one version per distinct encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cssl_core.models import build_mae
from cssl_core.models.io import encoder_digest, save_model
from tasks import tracking
from tasks.report import register_final_encoder
from tasks.tracking import DIGEST_TAG, MODEL_NAME

STAGE = "s2"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with a real sqlite MLflow store and no parent pipeline run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    monkeypatch.delenv(tracking.EXPERIMENT_ENV, raising=False)
    return tmp_path


def _save(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_mae("tiny", img_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
    save_model(Path("data/models") / STAGE, model, {"model_config": model.config.to_dict(), "strategy": "finetune"})
    return model.eval()


def _register(score: float) -> str:
    with tracking.stage_run("report"):
        return register_final_encoder(STAGE, score)


def _versions() -> dict[str, dict[str, str]]:
    from mlflow import MlflowClient

    return {str(v.version): v.tags for v in MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")}


def _alias(name: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(MODEL_NAME, name).version)


@pytest.mark.slow
def test_registered_encoder_embeds_batches_of_one_and_four_and_is_registered_once(project, capfd, caplog):
    import mlflow

    model = _save(seed=0)
    version = _register(0.7)
    # torch.export's 0/1-specialisation warning, printed at every report before: a logging record on stderr
    shown = capfd.readouterr().err + caplog.text
    assert "specialized" not in shown and "Guard" not in shown, shown

    assert _register(0.7) == version  # same encoder: no second version
    assert list(_versions()) == [version]
    assert _versions()[version][DIGEST_TAG] == encoder_digest(model)

    from mlflow import MlflowClient

    card = MlflowClient().get_model_version(MODEL_NAME, version)  # what it expects, before anyone calls it
    assert card.description == card.tags["cssl.input"]
    assert card.description.startswith("input: float32 tensor (N, 1, 32, 32), slices windowed and scaled to [0, 1]")
    assert "output: (N, 16, 32)" in card.description

    encoder = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}@best")
    for batch in (1, 4):
        x = torch.rand(batch, 1, 32, 32)
        with torch.no_grad():
            expected = model(x)
        got = encoder(x)
        assert got.shape == expected.shape == (batch, 16, 32)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_a_changed_encoder_gets_a_new_version_and_aliases_follow(project):
    first = _register_seed(seed=0, score=0.7)
    second = _register_seed(seed=1, score=0.6)
    assert first != second and set(_versions()) == {first, second}
    assert (_alias("best"), _alias("newest")) == (first, second)

    # the first encoder again (e.g. a reverted change): its version is reused and becomes the newest
    assert _register_seed(seed=0, score=0.7) == first
    assert set(_versions()) == {first, second}
    assert (_alias("best"), _alias("newest")) == (first, first)


def _register_seed(seed: int, score: float) -> str:
    _save(seed)
    return _register(score)


def test_digest_depends_on_the_weights_only_through_their_values():
    torch.manual_seed(0)
    a = build_mae("tiny", img_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
    b = build_mae(a.config)
    b.load_state_dict(a.state_dict())
    assert encoder_digest(a) == encoder_digest(b)
    with torch.no_grad():
        b.norm.weight[0] += 1e-3
    assert encoder_digest(a) != encoder_digest(b)
