"""Stage `init`: the randomly initialised encoder every continual schedule starts from (`prev: init`).

Making it a stage of its own gives the first continual stage the same inputs as every later one (a model
and a buffer), and gives evaluation a seeded random-encoder reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cssl_core.atomic_io import write_json
from tasks import tracking
from tasks.buffers import write_no_buffer
from tasks.continual import DATA, INIT, save_model


def run_init(params: dict[str, Any]) -> dict[str, Any]:
    from cssl_core.models import MAEConfig, build_mae

    ssl = params["ssl"]
    config = MAEConfig.from_preset(ssl["preset"], **(ssl.get("model") or {}))
    seed = int(ssl["train"]["seed"])
    with tracking.stage_run(INIT, {"preset": ssl["preset"], "seed": seed, **config.to_dict()}):
        torch.manual_seed(seed)
        model = build_mae(config)
        n_params = sum(p.numel() for p in model.parameters())
        save_model(
            Path(DATA / "models" / INIT),
            model,
            {"model_config": config.to_dict(), "stage": INIT, "strategy": None, "seed": seed},
        )
        write_no_buffer(DATA / "buffers" / INIT)
        # the first stage's pretrain waits on data/privacy/<prev>.json like every later one: nothing to audit here
        (DATA / "privacy").mkdir(parents=True, exist_ok=True)
        write_json(DATA / "privacy" / f"{INIT}.json", {"buffer": INIT, "kind": "none", "audited": False,
                                                       "passed": True, "note": "no buffer: nothing to audit"})
        tracking.log_metrics({"parameters": n_params})
    return {"parameters": n_params, "preset": ssl["preset"]}
