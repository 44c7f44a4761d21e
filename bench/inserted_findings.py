"""What does stage-1 pretraining keep of a slice, and what does it drop? One JSON document.

bench/readouts.py found the stage-1 encoder no better than a random one on the phantom's findings with every
readout. This bench asks the encoders about findings whose kind is controlled: into half of the 96 fresh
patients' slices (bench/forgetting.py `cpu_s1_long_eval96`) it inserts one disk in soft tissue near the
centre, either brighter (`blob`: +amp HU, a grey-level finding) or textured at the same mean grey level
(`stripes`: +-amp HU diagonal stripes 2 px wide; `speckle`: +-amp HU per pixel at random), then probes "was
a disk inserted?" (and, for whole-slice changes that keep every grey level, "is this slice mirrored left-right /
flipped front-back?") with the linear probe on pooled tokens (mean, and mean + max), 4 patient folds, for the
random encoder and the stage-1 encoder of each seed. Labels are exactly the insertions, so a probe at chance
means the encoder's pooled tokens do not carry the finding.

Usage: python bench/inserted_findings.py [--seeds 0 1 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import forgetting as study  # noqa: E402
import readouts  # noqa: E402

from cssl_core.evaluation.features import extract_tokens  # noqa: E402
from cssl_core.evaluation.probes import linear_probe  # noqa: E402
from cssl_core.evaluation.splits import patient_folds  # noqa: E402

# (kind, amplitude in HU, radius in px at 96 px)
FINDINGS = (("blob", 40.0, 5), ("stripes", 60.0, 5), ("speckle", 60.0, 5), ("stripes", 60.0, 8))
# Whole-slice changes that keep every grey level and move anatomy: a left-right mirror (dextrocardia, or a
# laterality error in the header) and an anterior-posterior flip (a prone scan read as supine).
ORIENTATIONS = ("mirror", "prone")
SOFT_TISSUE_HU = (0.0, 100.0)
CENTRE_PX = 30  # the disk's centre lies within this many pixels of the slice centre (the mediastinum's region)
INSERT_SEED = 5


def insert(hu: np.ndarray, kind: str, amplitude: float, radius: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU slices with a disk inserted into about half of them, label = inserted). A slice without a soft-tissue
    pixel near the centre gets no disk and label 0.

    Args:
        hu: (n, S, S) HU slices.
    """
    rng = np.random.default_rng(seed)
    out, label = hu.astype(np.float32).copy(), rng.random(len(hu)) < 0.5
    if kind in ORIENTATIONS:
        axis = -1 if kind == "mirror" else -2
        out[label] = np.flip(out[label], axis=axis)
        return out, label.astype(np.int64)
    size = hu.shape[-1]
    rows, cols = np.mgrid[:size, :size]
    near_centre = (np.abs(rows - size // 2) < CENTRE_PX) & (np.abs(cols - size // 2) < CENTRE_PX)
    stripes = np.where(((rows + cols) // 2) % 2 == 0, 1.0, -1.0)
    for index in np.flatnonzero(label):
        soft = (hu[index] > SOFT_TISSUE_HU[0]) & (hu[index] < SOFT_TISSUE_HU[1]) & near_centre
        candidates = np.argwhere(soft)
        if len(candidates) == 0:
            label[index] = False
            continue
        row, col = candidates[rng.integers(len(candidates))]
        disk = (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
        if kind == "blob":
            out[index][disk] += amplitude
        elif kind == "stripes":
            out[index][disk] += amplitude * stripes[disk]
        elif kind == "speckle":
            out[index][disk] += amplitude * rng.choice([-1.0, 1.0], size=int(disk.sum()))
        else:
            raise ValueError(f"unknown finding kind {kind!r}; known: blob, stripes, speckle")
    return out, label.astype(np.int64)


def run(seeds: list[int], name: str = readouts.POINT_NAME) -> dict:
    point = study.POINTS[name]
    size = study.MAEConfig(**study.PRESETS["tiny"]).img_size
    training = study.cohort(study.COHORT_A, point.patients[0], size)
    fresh = study.cohort(dict(study.COHORT_A, seed=study.EVAL_SEED), point.eval_patients, size)
    inserted = {f"{kind}_{int(amp)}hu_r{radius}": insert(fresh["hu"], kind, amp, radius, INSERT_SEED)
                for kind, amp, radius in FINDINGS}  # fmt: skip
    inserted.update({kind: insert(fresh["hu"], kind, 0.0, 0, INSERT_SEED) for kind in ORIENTATIONS})
    runs = []
    for seed in seeds:
        trained, _ = readouts.stage1_model(point, seed, training, name)
        encoders = {"random": study.build_model(point, seed).eval(), "s1": trained}
        folds = patient_folds(fresh["patient"], point.eval_folds, seed)
        aucs: dict[str, dict[str, float]] = {name: {} for name in encoders}
        for finding, (hu, label) in inserted.items():
            stored = study.stored_uint8(study.windowed(hu, point.windows[0]))
            for name, model in encoders.items():
                last = extract_tokens(model, stored, np.arange(len(stored)), batch=128)  # the last block only
                for readout, X in (("mean", last.mean(1)), ("meanmax", np.concatenate([last.mean(1), last.max(1)], 1))):
                    aucs[name][f"{finding}|{readout}"] = float(np.mean(
                        [linear_probe(X[tr], label[tr], X[te], label[te], seed)["auc"] for tr, te in folds]
                    ))  # fmt: skip
        runs.append({"seed": seed, "auc": aucs})
        print(json.dumps({"seed": seed}), file=sys.stderr, flush=True)
    positives = {finding: round(float(label.mean()), 3) for finding, (_, label) in inserted.items()}
    return {"runs": runs, "positive_share": positives}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--point", default=readouts.POINT_NAME, choices=readouts.POINT_CHOICES)
    args = parser.parse_args()
    started = time.perf_counter()
    measured = run(args.seeds, args.point)
    result = {"bench": "inserted_findings", "point": args.point, "seeds": args.seeds,
              "findings": [list(f) for f in FINDINGS], "orientations": list(ORIENTATIONS),
              "positive_share": measured["positive_share"],
              "summary": readouts.summarise(measured["runs"]), "runs": measured["runs"],
              "wall_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    study.emit(result, args.out)


if __name__ == "__main__":
    main()
