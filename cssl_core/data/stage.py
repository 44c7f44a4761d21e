"""The loaders of one continual stage: its windowed slices split by patient into train and validation.

Why here and not in the stage script: the split, the augmentation seed and the loader settings decide which
slices a stage trains on, so tests and benchmarks must be able to build exactly what `pretrain@k` builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import DataLoader

from cssl_core.config.ssl import AUGMENT_MODES
from cssl_core.data.batch_augment import BatchAugment
from cssl_core.data.loader import make_loader
from cssl_core.data.split import patient_split
from cssl_core.data.transforms import train_transforms
from cssl_core.data.windowed import WindowedSlices


def stage_loaders(
    windowed: Path,
    image_size: int,
    val_fraction: float,
    batch_size: int,
    workers: int,
    seed: int,
    augment: str = "sample",
    audit_fraction: float = 0.0,
) -> tuple[dict[str, DataLoader], dict[str, Any]]:
    """({"train": ..., "val": ... when the split leaves validation patients}, the split record).

    Args:
        windowed: a data/windowed/<cohort>-<window> directory (index.parquet + slices.npy).
        image_size: the model's input size; the slices must have it (one clear error otherwise).
        augment: "sample" augments each slice in the loader; "batch" makes the train loader yield the stored
            uint8 slices and their seeds, for `batch_augmenter(...)` to augment on the training device; "none"
            trains on the slices as they are, like validation (bench/forgetting.py measured that the mild
            augmentation alone cuts a finetune's stage-1 forgetting several-fold).
        audit_fraction: patients held out of both sides for the privacy audit's membership tests (ssl.audit_fraction).

    The split record (row numbers and patient counts) is saved beside the model, so evaluation, the
    forgetting measure and the privacy audit use the same held-out patients.
    """
    index = pd.read_parquet(windowed / "index.parquet")
    train_rows, val_rows, audit_rows = patient_split(index, float(val_fraction), seed, float(audit_fraction))
    if augment not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_MODES)}, got {augment!r} (ssl.augment)")
    if augment == "batch":
        train = WindowedSlices(windowed, rows=train_rows, as_stored=True)
    elif augment == "none":
        train = WindowedSlices(windowed, rows=train_rows)
    else:
        train = WindowedSlices(windowed, rows=train_rows, transform=train_transforms(image_size, seed))
    if train.size != image_size:
        raise ValueError(
            f"{windowed} holds {train.size}px slices but the model takes {image_size}px: "
            "set window.size or ssl.model.img_size so they agree"
        )
    loaders = {"train": make_loader(train, int(batch_size), int(workers), seed)}
    if len(val_rows):
        val = WindowedSlices(windowed, rows=val_rows)
        loaders["val"] = make_loader(val, int(batch_size), 0, seed, shuffle=False, drop_last=False)
    split = {
        "train_rows": train_rows.tolist(),
        "val_rows": val_rows.tolist(),
        "n_train_patients": int(index.iloc[train_rows]["patient_key"].nunique()),
        "n_val_patients": int(index.iloc[val_rows]["patient_key"].nunique()) if len(val_rows) else 0,
    }
    if len(audit_rows):  # only when held out: the split records of audit_fraction 0 keep the keys they always had
        split["audit_rows"] = audit_rows.tolist()
        split["n_audit_patients"] = int(index.iloc[audit_rows]["patient_key"].nunique())
    return loaders, split


MIN_HELD_OUT = (16, 2)  # (slices, patients): below either, a stage's validation and forgetting figures are anecdotes


def held_out_warning(split: dict[str, Any], stage: str) -> str | None:
    """One line when a stage holds out fewer than MIN_HELD_OUT slices or patients (a small own cohort: 5 patients
    at val_fraction 0.2 held out one patient's 2 slices), since its validation loss and the forgetting metric
    of every later stage rest on them; None otherwise (and for val_fraction 0, which holds out nothing on purpose)."""
    slices, patients = len(split["val_rows"]), int(split["n_val_patients"])
    if slices == 0 or (slices >= MIN_HELD_OUT[0] and patients >= MIN_HELD_OUT[1]):
        return None
    return (f"warning: stage {stage} holds out {slices} slice(s) of {patients} patient(s) for its validation loss "
            "and forgetting metric: too few to trust; add patients to its cohort or raise ssl.val_fraction")  # fmt: skip


def batch_augmenter(augment: str, image_size: int) -> BatchAugment | None:
    """What `train_stage` applies to each train batch on the device: None for `ssl.augment: sample`."""
    return BatchAugment(image_size) if augment == "batch" else None
