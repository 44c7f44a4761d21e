"""Stage `export@<stage>`: after a stage, keep a small, representative, diverse subset of it for replay.

What is kept depends on the strategy: latents z = f_low(x) (float16, no pixels) for latent replay, the
slices themselves for the raw-replay baselines (er, der, medcoss, joint), nothing for finetune. The
subset comes from the stage's training slices only (its held-out patients stay unseen, for evaluation),
and the buffer of every earlier stage is carried forward, so data/buffers/<k> holds stages 1..k.

A buffer file stores only what replay needs (docs/privacy.md): no finding labels (unless `replay.keep_labels`
is true, which the audit stage flags), and this stage's rows in an order shuffled with the stage seed, so
that neighbouring rows do not group one patient's slices as the training order does.

The rows are built by cssl_core/replay/rows.py, which the audit's scoring also calls to rebuild them; this
module only carries the earlier buffer forward, writes the new one and records what it kept.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.replay.directory import read_buffer, write_buffer
from cssl_core.replay.modes import buffer_mode
from cssl_core.replay.rows import build_stage_rows, export_plan
from tasks import tracking


def run_export(stage: str, config: ProjectConfig) -> dict[str, Any]:
    """Write data/buffers/<stage> (the earlier stages' rows, then this stage's) and its summary metrics."""
    plan = export_plan(stage, config)
    paths, strategy, strategy_name = plan.paths, plan.strategy, config.ssl.strategy
    stage_name = f"export@{stage}"
    run_params = {
        "stage": stage,
        "strategy": strategy_name,
        "kind": plan.kind,
        "selection": plan.selection,
        "budget": plan.budget,
        "keeps_raw_images": strategy.keeps_raw_images,
        "privacy_mode": plan.privacy_mode,
    }
    with tracking.stage_run(
        stage_name,
        run_params,
        tags={"cssl.cohort": paths.cohort, "cssl.window": paths.window, "cssl.strategy": strategy_name},
    ):
        started = time.perf_counter()
        earlier = read_buffer(paths.prev_buffer)
        built = build_stage_rows(stage, config, plan)
        new = built.buffer
        nbytes = write_buffer(paths.buffer, earlier, new)
        total = (0 if earlier is None else len(earlier)) + (0 if new is None else len(new))
        summary = {
            "kind": built.kind,
            "keeps_raw_images": strategy.keeps_raw_images,
            "selection": built.selection,
            "privacy_mode": run_params["privacy_mode"],
            "candidates": built.n_candidates,
            "selected": len(built.rows),
            "stored_rows": 0 if new is None else len(new),
            "buffer_samples": total,
            "buffer_bytes": nbytes,
            "seconds": time.perf_counter() - started,
        }
        if new is not None and new.ledger:  # a formal mode: what this stage's release spent
            summary.update({"epsilon": new.ledger[-1]["epsilon"], "delta": new.ledger[-1]["delta"]})
            line = buffer_mode(plan.privacy.mode).release_warning(stage, new.ledger[-1])
            if line:  # legal but weak (a small stage): said once, here, not when the audit rebuilds the rows
                print(line, file=sys.stderr, flush=True)
        metrics_path = paths.metrics("export")
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(metrics_path, summary)
        tracking.log_metrics(
            {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
    return summary
