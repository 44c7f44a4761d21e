"""Stage `init`: the randomly initialised encoder every continual schedule starts from (`prev: init`).

Making it a stage of its own gives the first continual stage the same inputs as every later one (a model
and a buffer), and gives evaluation a seeded random-encoder reference.
"""

from __future__ import annotations

from typing import Any

import torch

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.layout import INIT, PRIVACY, buffer_dir, model_dir, privacy_report
from cssl_core.models.io import save_model
from cssl_core.privacy.clearance import write_clearance
from cssl_core.replay.directory import write_no_buffer
from tasks import tracking


def run_init(config: ProjectConfig) -> dict[str, Any]:
    """Seed with ssl.train.seed (not a stage's override: no stage owns init) and save the preset's MAE."""
    from cssl_core.models import build_mae

    ssl = config.ssl
    model_config, seed = ssl.model, ssl.train.seed  # MAEConfig: the preset with ssl.model on top
    with tracking.stage_run(INIT, {"preset": ssl.preset, "seed": seed, **model_config.to_dict()}):
        torch.manual_seed(seed)
        model = build_mae(model_config)
        n_params = sum(p.numel() for p in model.parameters())
        save_model(
            model_dir(INIT),
            model,
            {"model_config": model_config.to_dict(), "stage": INIT, "strategy": None, "seed": seed},
        )
        write_no_buffer(buffer_dir(INIT))
        # the first stage's pretrain waits on data/privacy/<prev>.cleared.json like every later one; nothing to
        # audit here, so init clears itself, and its report says why
        PRIVACY.mkdir(parents=True, exist_ok=True)
        write_json(privacy_report(INIT), {"buffer": INIT, "kind": "none", "audited": False,
                                          "note": "no buffer: nothing to audit"})  # fmt: skip
        write_clearance(INIT)
        tracking.log_metrics({"parameters": n_params})
    return {"parameters": n_params, "preset": ssl.preset}
