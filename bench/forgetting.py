"""Which knobs make a plain finetune forget stage 1, on the project's own model and metrics? One JSON document.

The `cpu` comparison could not judge the method because finetune barely forgot (+2 % stage-1 reconstruction
loss, no probe moved). This study trains stage 1 then finetunes on stage 2 (no replay, no distillation), in
memory and without DVC so that a point costs ~1 minute, and reports for every point, over several seeds:

- `recon_s1dec`: masked-reconstruction loss on stage 1's held-out patients of the encoder after stage 2 read by
  the decoder kept from stage 1 (the pipeline's forgetting metric, cssl_core.evaluation.forgetting), relative to
  the stage-1 model's own loss on the same masks;
- `recon_own`: the same through the current (stage-2) decoder, i.e. what the whole model still reconstructs;
- probe AUCs on stage-1 tasks (cohort A, stage-1 window, all its patients, patient folds): linear on pooled
  tokens and the per-token lesion probe, of the random encoder, after stage 1 and after stage 2.

It reuses the pipeline's pieces (phantom generator, resampling, windowing and uint8 storage, MaskedAutoencoder,
AdamW parameter groups, warm-up cosine schedule, reconstruction metric, probes, patient folds); what it leaves
out is the strategy machinery (finetune has none) and, unless a point sets `augment`, the training augmentation,
which turned out to matter: absolute losses and forgetting of points without it differ from a `dvc repro` run.
Every point is reported, not only the ones that forget.

Usage: python bench/forgetting.py [--points base,raw_target,...] [--seeds 0 1 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cssl_core.data.batch_augment import augment_batch  # noqa: E402
from cssl_core.demo.phantom import PhantomConfig, cohort_volumes  # noqa: E402
from cssl_core.evaluation.features import extract_tokens, pooled  # noqa: E402
from cssl_core.evaluation.forgetting import reconstruction_loss  # noqa: E402
from cssl_core.evaluation.probes import linear_probe, token_labels_from_masks, token_probe  # noqa: E402
from cssl_core.evaluation.splits import patient_folds  # noqa: E402
from cssl_core.models.config import PRESETS, MAEConfig  # noqa: E402
from cssl_core.models.mae import MaskedAutoencoder, patchify  # noqa: E402
from cssl_core.resample import resize_hu, resize_mask  # noqa: E402
from cssl_core.train.optim import build_optimizer  # noqa: E402
from cssl_core.train.schedule import warmup_cosine  # noqa: E402
from cssl_core.windowing import Window, quantise, window_unit  # noqa: E402

WINDOWS = {"lung": (1500.0, -600.0), "mediastinal": (350.0, 40.0), "bone": (2000.0, 300.0)}
# the demo's two training cohorts (params.yaml data.demo.phantom_a / phantom_b), patients set per point
COHORT_A = dict(seed=11, n_slices=40, matrix=128, pixel_spacing_mm=2.6, slice_thickness_mm=5.0, noise_hu=12.0)
COHORT_B = dict(seed=23, n_slices=40, matrix=112, pixel_spacing_mm=3.0, slice_thickness_mm=4.0, noise_hu=20.0)
S1_TASKS = {"mediastinal_lesion": ("has_mediastinal_lesion", 2), "lowcontrast_mass": ("has_lowcontrast_mass", 3)}
CACHE = Path("/tmp/cssl-forgetting-cache")


@dataclass(frozen=True)
class Point:
    """One configuration of the two-stage finetune."""

    windows: tuple[str, str] = ("mediastinal", "lung")
    patients: tuple[int, int] = (16, 16)
    epochs: tuple[int, int] = (15, 15)
    lr: tuple[float, float] = (5e-4, 5e-4)
    norm_target: bool = True
    model: str = "tiny"  # a key of MODELS
    batch_size: int = 32
    augment: bool = False  # the pipeline's training augmentation (cssl_core.data.batch_augment, ssl.augment: batch)
    s2_augment: bool | None = None  # stage 2's own setting (continual.stages.s2.augment); None: as `augment`
    # probes on `eval_patients` fresh patients of cohort A's generator (another seed: never trained on) with
    # `eval_folds` patient folds; 0: on the stage-1 cohort itself, all its patients (the points before)
    eval_patients: int = 0
    eval_folds: int = 2
    token_probe: bool = True  # the per-token lesion probe: most of a point's time on a large evaluation cohort


MODELS = {
    "tiny": {},  # 96 px, patch 16, 6 blocks x 192
    "narrow": dict(hidden_size=96, num_heads=3, mlp_dim=384, num_layers=4),
    "wide": dict(hidden_size=384, num_heads=6, mlp_dim=1536),
    "lead": dict(img_size=64, patch_size=8, num_layers=4),  # the lead's MONAI MAE: 64 px, patch 8, 4 x 192
    "patch8": dict(patch_size=8),  # tiny at 96 px with 4x the tokens (144): finer than the phantom's small findings
}
BASE = Point()
POINTS: dict[str, Point] = {
    "base": BASE,
    "raw_target": replace(BASE, norm_target=False),
    "s2_long": replace(BASE, epochs=(15, 45)),
    "s2_lr_x4": replace(BASE, lr=(5e-4, 2e-3)),
    "lung_first": replace(BASE, windows=("lung", "mediastinal")),
    "bone_second": replace(BASE, windows=("mediastinal", "bone")),
    "cohorts_x2": replace(BASE, patients=(32, 32)),
    "narrow_model": replace(BASE, model="narrow"),
    "wide_model": replace(BASE, model="wide"),
    "lead_model": replace(BASE, model="lead"),
    "raw_lead": replace(BASE, norm_target=False, model="lead"),
    "raw_long_lr": replace(BASE, norm_target=False, epochs=(15, 45), lr=(5e-4, 2e-3)),
    # the `cpu` comparison's cohorts (32 stage-1, 16 stage-2 patients) with the stage-2 stresses
    "cpu_lr_x4": replace(BASE, patients=(32, 16), lr=(5e-4, 2e-3)),
    "cpu_raw_lr_x4": replace(BASE, patients=(32, 16), lr=(5e-4, 2e-3), norm_target=False),
    # ... and with the pipeline's augmentation (random resized crop, flip, mild intensity jitter)
    "base_aug": replace(BASE, augment=True),
    "cpu_lr_x4_aug": replace(BASE, patients=(32, 16), lr=(5e-4, 2e-3), augment=True),
    "cpu_raw_lr_x4_aug": replace(BASE, patients=(32, 16), lr=(5e-4, 2e-3), norm_target=False, augment=True),
    # augmentation in stage 1 only (what the pretrained encoder needs to beat a random one), none in stage 2
    "cpu_lr_x4_aug_s1": replace(BASE, patients=(32, 16), lr=(5e-4, 2e-3), augment=True, s2_augment=False),
    # a longer stage 1 (trained once per seed in a comparison, so cheap there): does the encoder beat random then?
    "cpu_lr_x4_s1_long": replace(BASE, patients=(32, 16), epochs=(30, 15), lr=(5e-4, 2e-3)),
    # ... probed on 96 fresh patients with 4 folds: is the pretrained-minus-random gap hidden by probe noise?
    "cpu_s1_long_eval96": replace(BASE, patients=(32, 16), epochs=(30, 15), lr=(5e-4, 2e-3), eval_patients=96,
                                  eval_folds=4, token_probe=False),
    # ... with plain [0, 1] pixel targets: per-patch normalisation removes each patch's grey level from the target,
    # the very thing the phantom's findings differ in (bench/inserted_findings.py)
    "cpu_s1_long_eval96_raw": replace(BASE, patients=(32, 16), epochs=(30, 15), lr=(5e-4, 2e-3), eval_patients=96,
                                      eval_folds=4, token_probe=False, norm_target=False),
    # ... with a finer model (patch 8), the last lever docs/evaluation.md names for pretraining to beat random: the
    # lead's 64-px 4-block model (64 tokens, about tiny's cost) and tiny itself at patch 8 (144 tokens, ~4x)
    "cpu_s1_long_eval96_raw_lead": replace(BASE, patients=(32, 16), epochs=(30, 15), lr=(5e-4, 2e-3), eval_patients=96,
                                           eval_folds=4, token_probe=False, norm_target=False, model="lead"),
    "cpu_s1_long_eval96_raw_patch8": replace(BASE, patients=(32, 16), epochs=(30, 15), lr=(5e-4, 2e-3),
                                             eval_patients=96, eval_folds=4, token_probe=False, norm_target=False,
                                             model="patch8"),
}
EVAL_SEED = 101  # cohort A's generator settings with another seed: patients of the same kind, in no stage


class RawTargetMAE(MaskedAutoencoder):
    """The MAE with plain [0, 1] pixel targets (no per-patch normalisation): grey levels become part of the
    pretext, which is what a window change then disturbs."""

    def patch_targets(self, x: torch.Tensor) -> torch.Tensor:
        return patchify(x.float(), self.config.patch_size)


def model_config(model: str) -> MAEConfig:
    """The tiny preset with a key of MODELS applied (validated by MAEConfig)."""
    return MAEConfig(**{**PRESETS["tiny"], **MODELS[model]})


def stored_uint8(images: torch.Tensor) -> np.ndarray:
    """(n, 1, S, S) windowed [0, 1] floats -> (n, S, S) uint8, the pipeline's stored slices that the probes read."""
    return (images[:, 0].numpy() * 255.0 + 0.5).astype(np.uint8)


def build_model(point: Point, seed: int) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    config = model_config(point.model)
    return (MaskedAutoencoder if point.norm_target else RawTargetMAE)(config)


def cohort(base: dict, n_patients: int, size: int) -> dict[str, np.ndarray]:
    """HU slices resized to `size` (float32), masks, slice labels and patient index of a phantom cohort,
    generated once and cached on disk (generation is the slow part: ~1 s per patient)."""
    key = hashlib.sha256(json.dumps([base, n_patients, size], sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"{key}.npz"
    if path.exists():
        with np.load(path) as stored:
            return dict(stored)
    hu, masks, patient, labels = [], [], [], {name: [] for name, _ in S1_TASKS.values()}
    for index, volume, mask, slice_labels in cohort_volumes(PhantomConfig(n_patients=n_patients, **base)):
        hu.append(resize_hu(volume, size))
        masks.append(resize_mask(mask, size))
        patient.append(np.full(len(volume), index))
        for name in labels:
            labels[name].append(slice_labels[name])
    out = {"hu": np.concatenate(hu), "masks": np.concatenate(masks), "patient": np.concatenate(patient)}
    out.update({name: np.concatenate(values) for name, values in labels.items()})
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def windowed(hu: np.ndarray, window: str) -> torch.Tensor:
    """(n, 1, S, S) float in [0, 1] through the pipeline's uint8 storage (256 grey levels)."""
    width, level = WINDOWS[window]
    stored = quantise(window_unit(hu, Window(name=window, width=width, level=level)))
    return torch.from_numpy(stored.astype(np.float32) / 255.0).unsqueeze(1)


def train(
    model: MaskedAutoencoder, images: torch.Tensor, epochs: int, lr: float, batch: int, seed: int, augment: bool
) -> float:
    """The pretext on `images` with the pipeline's optimiser and schedule (2 warm-up epochs), and with its batch
    augmentation (each sample's crop, flip and jitter drawn from its own seed) when `augment`; seconds taken."""
    start = time.perf_counter()
    optimizer = build_optimizer(model, lr=lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(images) / batch)
    total = epochs * steps_per_epoch
    schedule = warmup_cosine(optimizer, min(2 * steps_per_epoch, total), total)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            rows = order[step * batch : (step + 1) * batch]
            x = images[rows]
            if augment:
                x = augment_batch(x, (seed * 1_000_003 + epoch * len(images) + rows).tolist(), x.shape[-1])
            loss, _ = model.mae_loss(x, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    return time.perf_counter() - start


def probes(
    model: MaskedAutoencoder,
    data: dict[str, np.ndarray],
    images: torch.Tensor,
    seed: int,
    n_folds: int = 2,
    with_token: bool = True,
) -> dict:
    """AUC (mean over `n_folds` patient folds) of the linear probe on pooled tokens per stage-1 task, and of the
    token probe against the lesion masks of each task's class."""
    stored = stored_uint8(images)
    tokens = extract_tokens(model, stored, np.arange(len(stored)), batch=128)
    features = pooled(tokens)
    folds = patient_folds(data["patient"], n_folds, seed)
    out = {}
    for task, (label, mask_class) in S1_TASKS.items():
        y = data[label].astype(np.int64)
        token_y = token_labels_from_masks(data["masks"] == mask_class, model.config.patch_size)
        linear, token = [], []
        for train_idx, test_idx in folds:
            linear.append(linear_probe(features[train_idx], y[train_idx], features[test_idx], y[test_idx], seed)["auc"])
            if not with_token:
                continue
            token.append(
                token_probe(tokens[train_idx], token_y[train_idx], tokens[test_idx], token_y[test_idx], seed)["auc"]
            )
        out[f"linear_{task}"] = float(np.nanmean(linear))
        if with_token:
            out[f"token_{task}"] = float(np.nanmean(token))
    return out


def held_out(patient: np.ndarray, seed: int, fraction: float = 0.2) -> np.ndarray:
    """Rows of round(fraction x patients) patients (at least 1) drawn by `seed`: stage 1's forgetting set."""
    patients = np.unique(patient)
    chosen = np.random.default_rng(seed).choice(patients, size=max(1, round(fraction * len(patients))), replace=False)
    return np.isin(patient, chosen)


def run_point(point: Point, seed: int, stage1_cache: dict) -> dict:
    size = model_config(point.model).img_size
    data_a = cohort(COHORT_A, point.patients[0], size)
    data_b = cohort(COHORT_B, point.patients[1], size)
    first, second = point.windows
    s1_images = windowed(data_a["hu"], first)
    s2_images = windowed(data_b["hu"], second)
    s1_val = held_out(data_a["patient"], seed)
    s2_val = held_out(data_b["patient"], seed)
    # stage-1 tasks: cohort A in the stage-1 window, all its patients, or fresh patients of its generator
    fresh = dict(COHORT_A, seed=EVAL_SEED)
    probe_data = data_a if not point.eval_patients else cohort(fresh, point.eval_patients, size)
    probe_images = s1_images if not point.eval_patients else windowed(probe_data["hu"], first)

    def probed(encoder: MaskedAutoencoder) -> dict:
        return probes(encoder, probe_data, probe_images, seed, point.eval_folds, point.token_probe)

    key = (point.windows[0], point.patients[0], point.epochs[0], point.lr[0], point.norm_target, point.model,
           point.augment, point.eval_patients, point.eval_folds, seed)  # fmt: skip
    if key not in stage1_cache:
        random_probes = probed(build_model(point, seed))
        model = build_model(point, seed)
        s1_seconds = train(model, s1_images[~torch.from_numpy(s1_val)], point.epochs[0], point.lr[0],
                           point.batch_size, seed, point.augment)  # fmt: skip
        stage1_cache[key] = (model.state_dict(), random_probes, probed(model), s1_seconds)
    state, random_probes, s1_probes, s1_seconds = stage1_cache[key]
    after_s1 = build_model(point, seed)
    after_s1.load_state_dict(state)
    model = build_model(point, seed)
    model.load_state_dict(state)
    s2_augment = point.augment if point.s2_augment is None else point.s2_augment
    s2_seconds = train(model, s2_images[~torch.from_numpy(s2_val)], point.epochs[1], point.lr[1], point.batch_size,
                       seed + 1000, s2_augment)  # fmt: skip

    held = s1_images[torch.from_numpy(s1_val)]
    recon_before = reconstruction_loss(after_s1, after_s1, held, seed=seed)
    recon_s1dec = reconstruction_loss(model, after_s1, held, seed=seed)
    recon_own = reconstruction_loss(model, model, held, seed=seed)
    s2_held = s2_images[torch.from_numpy(s2_val)]
    return {
        "seed": seed,
        "seconds": {"s1": round(s1_seconds, 1), "s2": round(s2_seconds, 1)},
        "slices": {
            "s1_train": int((~s1_val).sum()),
            "s2_train": int((~s2_val).sum()),
            "s1_held_out": int(s1_val.sum()),
        },
        "recon_s1_after_s1": recon_before,
        "recon_s1dec_after_s2": recon_s1dec,
        "recon_own_after_s2": recon_own,
        "recon_s1dec_change_pct": 100.0 * (recon_s1dec / recon_before - 1.0),
        "recon_own_change_pct": 100.0 * (recon_own / recon_before - 1.0),
        "recon_s2_after_s2": reconstruction_loss(model, model, s2_held, seed=seed),
        "probes": {
            "random": random_probes,
            "after_s1": s1_probes,
            "after_s2": probed(model),
        },
    }


def mean_sd(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    sd = float(array.std(ddof=1)) if len(array) > 1 else float("nan")
    return {"mean": round(float(array.mean()), 4), "sd": round(sd, 4), "n": len(array)}


def summarise(runs: list[dict]) -> dict:
    """Mean +- sd over seeds of each figure, and paired (per-seed) probe differences."""
    out = {
        "recon_s1dec_change_pct": mean_sd([r["recon_s1dec_change_pct"] for r in runs]),
        "recon_own_change_pct": mean_sd([r["recon_own_change_pct"] for r in runs]),
        "recon_s1_after_s1": mean_sd([r["recon_s1_after_s1"] for r in runs]),
        "seconds_per_seed": mean_sd([r["seconds"]["s1"] + r["seconds"]["s2"] for r in runs]),
    }
    for probe in runs[0]["probes"]["after_s1"]:
        out[f"{probe}_after_s1"] = mean_sd([r["probes"]["after_s1"][probe] for r in runs])
        out[f"{probe}_s1_minus_random"] = mean_sd([r["probes"]["after_s1"][probe] - r["probes"]["random"][probe]
                                                   for r in runs])  # fmt: skip
        out[f"{probe}_change_after_s2"] = mean_sd([r["probes"]["after_s2"][probe] - r["probes"]["after_s1"][probe]
                                                   for r in runs])  # fmt: skip
    return out


def table(results: list[dict]) -> str:
    """Markdown rows (mean +- sd over seeds) of the points of one or more study files, in their order."""
    columns = [
        ("s1 recon, s1 decoder", "recon_s1dec_change_pct", "{:+.1f} ± {:.1f} %"),
        ("s1 recon, own decoder", "recon_own_change_pct", "{:+.0f} ± {:.0f} %"),
        ("linear med. lesion: s1 - random", "linear_mediastinal_lesion_s1_minus_random", "{:+.3f} ± {:.3f}"),
        ("linear med. lesion: change after s2", "linear_mediastinal_lesion_change_after_s2", "{:+.3f} ± {:.3f}"),
        ("linear low-contrast: change after s2", "linear_lowcontrast_mass_change_after_s2", "{:+.3f} ± {:.3f}"),
        ("token med. lesion: change after s2", "token_mediastinal_lesion_change_after_s2", "{:+.3f} ± {:.3f}"),
        ("s per seed", "seconds_per_seed", "{:.0f}"),
    ]
    lines = [
        "| point | seeds | " + " | ".join(name for name, _, _ in columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for result in results:
        for name, point in result["points"].items():
            cells = []
            for _, key, form in columns:
                figure = point["summary"].get(key)
                cells.append("-" if figure is None else form.format(figure["mean"], figure["sd"]))
            seeds = point["summary"]["recon_s1dec_change_pct"]["n"]
            lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default=",".join(POINTS), help="comma-separated names of: " + ", ".join(POINTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (one file per study)")
    parser.add_argument("--table", type=Path, nargs="+", default=None,
                        help="print a markdown table of these study files")  # fmt: skip
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(path.read_text()) for path in args.table]))
        return
    names = [name.strip() for name in args.points.split(",") if name.strip()]
    unknown = sorted(set(names) - set(POINTS))
    if unknown:
        parser.error(f"unknown point(s) {unknown}; known: {sorted(POINTS)}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    stage1_cache: dict = {}
    result = {"bench": "forgetting", "seeds": args.seeds, "threads": torch.get_num_threads(), "points": {}}
    for name in names:
        point_start = time.perf_counter()
        runs = []
        for seed in args.seeds:
            runs.append(run_point(POINTS[name], seed, stage1_cache))
            progress = {"point": name, "seed": seed, "probes": runs[-1]["probes"],
                        "recon_s1dec_change_pct": runs[-1]["recon_s1dec_change_pct"]}  # fmt: skip
            print(json.dumps(progress), file=sys.stderr, flush=True)
        result["points"][name] = {"knobs": asdict(POINTS[name]), "summary": summarise(runs), "runs": runs,
                                  "wall_s": round(time.perf_counter() - point_start, 1)}  # fmt: skip
        print(json.dumps({"point": name, **result["points"][name]["summary"]}), file=sys.stderr, flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    result["wall_s"] = round(time.perf_counter() - started, 1)
    emit(result, args.out)


def emit(result: dict, out: Path | None) -> None:
    """The bench's JSON on stdout, and in `out` when given (bench/readouts.py and inserted_findings.py too)."""
    text = json.dumps(result, indent=1)
    if out:
        out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
