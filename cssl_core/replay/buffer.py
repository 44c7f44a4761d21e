"""The replay buffer file: what a finished stage hands to the stages after it.

**A latent buffer is PHI-equivalent, not anonymous.** Latents are the lower encoder's output for real
patients' slices, and docs/privacy.md records that they can be inverted back into recognisable
slices (SSIM 0.82 with per-token ridge regression, 0.94 with gradient inversion through the shared encoder,
at split block 2 on the demo buffer). A latent buffer
therefore has the same access rules as the images. What it does guarantee, and what this writer enforces
rather than leaving to convention, is narrower: no pixel array and no identifier is stored. A latent
buffer holds exactly the latents (float16, (n, tokens, dim)), the stage and window each sample came
from, and optional per-sample analysis labels (bool/int). Anything else is refused at save and at load:
an array with an image's dtype or values, stored features, a label whose name looks like an identifier
(patient, series, key, uid, ...), string labels, or an unexpected file in the directory. Describe it as
"no pixels stored", never as "anonymous" or "private".

A latent buffer written in the `aggregate` privacy mode (cssl_core/replay/modes/aggregate.py) holds no individual
latent: its rows are cluster means, with `spread` (the per-token, per-channel sd of the cluster, float16, same
shape) and `counts` (slices per cluster, int32); replay samples synthetic latents from them. So does one written
in the `dp` mode (modes/dp.py), whose meta.json also carries the buffer's `privacy_ledger`: what each stage's
formally private release spent (epsilon, delta, noise multiplier, mechanisms), composed by the audit.

An image buffer (kind "image", for er / der / medcoss) keeps raw slices (n, H, W) as uint8 or float16 and,
for DER, the teacher's features (float16); its meta.json declares `keeps_raw_images: true` so that a
privacy check can find every run that kept images by reading metadata alone.

On disk a buffer is a directory: one `.npy` per array (memory-mappable, so a large buffer is paged in by
the data loader instead of read whole) and `meta.json` (format, kind, dtypes, shapes, label names). It is
written to a temporary sibling and renamed, so a crash never leaves a half-written buffer behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cssl_core.atomic_io import write_json

FORMAT = "cssl-replay-buffer"
VERSION = 1
KINDS = ("latent", "image")
LATENT_DTYPE = np.dtype(np.float16)
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float16))
FEATURE_DTYPE = np.dtype(np.float16)
META_FILE = "meta.json"
UNKNOWN_LABEL = -1  # fill value when buffers with different label sets are concatenated

_LABEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Substrings that mark an identifier wherever they occur, and whole snake_case tokens that do ("id", not "fluid").
_IDENTIFYING_PARTS = ("patient", "series", "study", "subject", "person", "accession", "institution", "birth", "dicom")
_IDENTIFYING_TOKENS = frozenset(
    "id ids uid uids key keys pid mrn sop name names date dates dob hash path file filename initials".split()
)
_CHUNK_ROWS = 4096


@dataclass(slots=True, eq=False)
class ReplayBuffer:
    """One stage's (or several stages') replay samples; slots forbid attaching any extra field."""

    kind: str
    data: np.ndarray
    stage: np.ndarray
    window: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    features: np.ndarray | None = None
    spread: np.ndarray | None = None  # aggregate mode: per-cluster token sd, (n, tokens, dim) float16
    counts: np.ndarray | None = None  # aggregate mode: slices per cluster, (n,) int32
    # what a formal privacy mode spent, one entry per stage that released under one (dp): meta.json carries it
    # with the buffer, so the privacy cost of what is stored travels with what is stored
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stage = _names_array(self.stage, "stage")
        self.window = _names_array(self.window, "window")
        self.labels = {str(k): np.asarray(v) for k, v in dict(self.labels).items()}
        check_structure(self)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def keeps_raw_images(self) -> bool:
        return self.kind == "image"

    @property
    def holds_clusters(self) -> bool:
        """True for an `aggregate` buffer: rows are cluster statistics, not any one slice's latent."""
        return self.spread is not None


def _names_array(values: object, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind != "U"):
        raise TypeError(f"{what} must be a 1-D array of str (one name per sample), got {array.dtype} {array.shape}")
    if array.size and (np.char.str_len(array) == 0).any():
        raise ValueError(f"{what} names must not be empty")
    return array.astype(str)


def identifying_label_name(name: str) -> bool:
    """True when a label name looks like it carries identity (patient_key, series_uid, study_date, ...)."""
    if any(part in name for part in _IDENTIFYING_PARTS):
        return True
    return any(token in _IDENTIFYING_TOKENS for token in name.split("_"))


def check_structure(buffer: ReplayBuffer) -> None:
    """Shapes, dtypes and field names: cheap checks run on every construction, save and load."""
    if buffer.kind not in KINDS:
        raise ValueError(f"buffer kind must be one of {KINDS}, got {buffer.kind!r}")
    if not isinstance(buffer.ledger, list) or not all(isinstance(e, dict) for e in buffer.ledger):
        raise ValueError("a buffer's privacy ledger is a list of per-stage accounting entries (dicts)")
    data = buffer.data
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy array, got {type(data).__name__}")
    n = data.shape[0] if data.ndim else 0
    if buffer.kind == "latent":
        if data.ndim != 3:
            raise ValueError(
                f"a latent buffer needs data of shape (n, tokens, dim); got ndim {data.ndim} {data.shape}"
                " (2-D is a single image or pooled features, 4-D is (n, C, H, W) images)"
            )
        if data.dtype != LATENT_DTYPE:
            kind = "an image dtype" if data.dtype.kind in "biu" else "not the stored latent dtype"
            raise TypeError(f"latent data must be float16, got {data.dtype} ({kind}); cast explicitly")
        if buffer.features is not None:
            raise ValueError("a latent buffer stores latents only; features belong to an image (DER) buffer")
        _check_clusters(buffer, n)
    else:
        if buffer.spread is not None or buffer.counts is not None:
            raise ValueError("cluster statistics (spread, counts) belong to a latent buffer, not an image one")
        if data.ndim != 3:
            raise ValueError(f"an image buffer needs slices of shape (n, H, W), got {data.shape}")
        if data.dtype not in IMAGE_DTYPES:
            raise TypeError(f"image data must be uint8 or float16 (the window stage's dtypes), got {data.dtype}")
        if buffer.features is not None:
            feats = buffer.features
            if not isinstance(feats, np.ndarray) or feats.ndim < 2 or feats.shape[0] != n:
                raise ValueError(f"features must be an array of shape ({n}, ...), got {getattr(feats, 'shape', feats)}")
            if feats.dtype != FEATURE_DTYPE:
                raise TypeError(f"stored features must be float16, got {feats.dtype}")
    for what, names in (("stage", buffer.stage), ("window", buffer.window)):
        if names.shape != (n,):
            raise ValueError(f"{what} must have one name per sample: shape ({n},), got {names.shape}")
    if not isinstance(buffer.labels, dict):
        raise TypeError("labels must be a dict of name -> per-sample array")
    for name, values in buffer.labels.items():
        if not _LABEL_NAME.match(name):
            raise ValueError(f"label name {name!r} must be snake_case ([a-z][a-z0-9_]*, at most 64 chars)")
        if identifying_label_name(name):
            raise ValueError(f"label {name!r} looks like an identifier; identities never leave ingestion")
        if values.shape != (n,):
            raise ValueError(f"label {name!r} must have shape ({n},), got {values.shape}")
        if values.dtype.kind not in "biu":
            raise TypeError(f"label {name!r} must be bool or integer (analysis labels only), got {values.dtype}")


def _check_clusters(buffer: ReplayBuffer, n: int) -> None:
    """spread and counts come together: one (tokens, dim) sd and one slice count per cluster row."""
    if (buffer.spread is None) != (buffer.counts is None):
        raise ValueError("an aggregate buffer needs both spread and counts (or neither, for a buffer of rows)")
    if buffer.spread is None:
        return
    if not isinstance(buffer.spread, np.ndarray) or buffer.spread.shape != buffer.data.shape:
        raise ValueError(
            f"spread must have the shape of data {buffer.data.shape}, got {getattr(buffer.spread, 'shape', None)}"
        )
    if buffer.spread.dtype != LATENT_DTYPE:
        raise TypeError(f"spread must be float16 like the latents, got {buffer.spread.dtype}")
    counts = buffer.counts
    if not isinstance(counts, np.ndarray) or counts.shape != (n,) or counts.dtype.kind not in "iu":
        raise ValueError(f"counts must be an integer array of shape ({n},), got {getattr(counts, 'shape', counts)}")
    if n and counts.min() < 1:
        raise ValueError("every cluster must count at least one slice")


def check_latents_are_not_images(data: np.ndarray) -> None:
    """Refuse float16 arrays whose values are those of an image rather than of a transformer activation.

    A windowed slice lies in [0, 1] (every value, since windows clip) and HU stored as float is integral;
    a block's output has negative and fractional values. Non-finite values mean a float32 -> float16 cast
    overflowed, which would silently corrupt replay. Read in row chunks so a memory-mapped buffer is not
    loaded whole.
    """
    in_unit_range = True
    integral = True
    for start in range(0, data.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(data[start : start + _CHUNK_ROWS], dtype=np.float32)
        if not np.isfinite(chunk).all():
            raise ValueError("latents contain NaN or inf (float16 overflow?); refusing to store them")
        in_unit_range = in_unit_range and bool(chunk.min() >= 0.0 and chunk.max() <= 1.0)
        integral = integral and bool(np.all(chunk == np.round(chunk)))
    if data.size and in_unit_range:
        raise ValueError("latent data lies entirely in [0, 1], the range of windowed slices: refusing an image")
    if data.size and integral:
        raise ValueError("latent data is entirely integral, like HU values: refusing an image")


def _array_files(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    files = {"data.npy": buffer.data, "stage.npy": buffer.stage, "window.npy": buffer.window}
    if buffer.features is not None:
        files["features.npy"] = buffer.features
    if buffer.spread is not None:
        files["spread.npy"] = buffer.spread
        files["counts.npy"] = buffer.counts
    for name, values in sorted(buffer.labels.items()):
        files[f"label.{name}.npy"] = values
    return files


def _describe(array: np.ndarray) -> dict[str, object]:
    return {"dtype": array.dtype.str, "shape": list(array.shape)}


def _meta(buffer: ReplayBuffer, files: dict[str, np.ndarray]) -> dict[str, object]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": buffer.kind,
        "n": len(buffer),
        "keeps_raw_images": buffer.keeps_raw_images,
        "phi_equivalent": True,
        "form": "clusters" if buffer.holds_clusters else "rows",
        "privacy": (
            "raw slices"
            if buffer.keeps_raw_images
            else "cluster means and sds of latents, no single slice's latent; see the buffer's audit (docs/privacy.md)"
            if buffer.holds_clusters
            else "no pixels stored; latents can be inverted into slices (docs/privacy.md), so not anonymous"
        ),
        "stages": list(dict.fromkeys(buffer.stage.tolist())),
        "windows": list(dict.fromkeys(buffer.window.tolist())),
        "labels": sorted(buffer.labels),
        "arrays": {fname: _describe(array) for fname, array in files.items()},
        **({"privacy_ledger": buffer.ledger} if buffer.ledger else {}),
    }


def _is_buffer_dir(path: Path) -> bool:
    try:
        return json.loads((path / META_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_buffer(buffer: ReplayBuffer, path: str | os.PathLike[str]) -> int:
    """Write `buffer` as a directory at `path` (replacing an earlier buffer there); return bytes written.

    Refuses anything outside the contract (module docstring). An existing path that is not a buffer
    directory is never deleted.
    """
    if type(buffer) is not ReplayBuffer:
        raise TypeError(f"save_buffer takes a ReplayBuffer, got {type(buffer).__name__}")
    check_structure(buffer)
    if buffer.kind == "latent":
        check_latents_are_not_images(buffer.data)
    target = Path(path)
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or _is_buffer_dir(target))):
        raise FileExistsError(f"{target} exists and is not a replay buffer; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    files = _array_files(buffer)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for fname, array in files.items():
            np.save(tmp / fname, np.ascontiguousarray(array), allow_pickle=False)
        write_json(tmp / META_FILE, _meta(buffer, files))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return buffer_nbytes(target)


def load_buffer(path: str | os.PathLike[str], mmap: bool = True) -> ReplayBuffer:
    """Read a buffer directory; `data` and `features` are read-only memory maps unless mmap=False.

    The directory must hold exactly the files its meta.json names: a file added after writing (an extra
    field) is refused, not ignored.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a replay buffer directory")
    try:
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{root}: unreadable {META_FILE}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{root} is not a {FORMAT} directory")
    if meta.get("version") != VERSION:
        raise ValueError(f"{root}: buffer format version {meta.get('version')!r}, this code reads {VERSION}")
    if meta.get("keeps_raw_images") is not (meta.get("kind") == "image"):
        raise ValueError(f"{root}: keeps_raw_images does not match kind {meta.get('kind')!r}")
    described = meta.get("arrays", {})
    present = {p.name for p in root.iterdir()}
    expected = set(described) | {META_FILE}
    if present != expected:
        raise ValueError(
            f"{root}: files do not match meta.json (unexpected: {sorted(present - expected)},"
            f" missing: {sorted(expected - present)}); refusing a buffer with extra or missing fields"
        )
    label_files = {f for f in described if f.startswith("label.")}
    known = {"data.npy", "stage.npy", "window.npy", "features.npy", "spread.npy", "counts.npy"} | label_files
    if set(described) - known or {"data.npy", "stage.npy", "window.npy"} - set(described):
        raise ValueError(f"{root}: meta.json names unknown arrays {sorted(set(described) - known)}")

    def read(fname: str, mappable: bool) -> np.ndarray:
        array = np.load(root / fname, mmap_mode="r" if (mmap and mappable) else None, allow_pickle=False)
        if _describe(array) != described[fname]:
            raise ValueError(f"{root / fname}: {_describe(array)} does not match meta.json {described[fname]}")
        return array

    return ReplayBuffer(
        kind=meta["kind"],
        data=read("data.npy", True),
        stage=read("stage.npy", False),
        window=read("window.npy", False),
        labels={f[len("label.") : -len(".npy")]: read(f, False) for f in sorted(label_files)},
        features=read("features.npy", True) if "features.npy" in described else None,
        spread=read("spread.npy", True) if "spread.npy" in described else None,
        counts=read("counts.npy", False) if "counts.npy" in described else None,
        ledger=list(meta.get("privacy_ledger", [])),
    )


def concat_buffers(buffers: Sequence[ReplayBuffer]) -> ReplayBuffer:
    """One buffer holding all earlier stages' samples, in the order given (stage names travel per sample).

    Kinds, per-sample shapes and dtypes must match. A label missing from some buffers is kept and filled
    with UNKNOWN_LABEL (-1) there, which makes a bool label an int8 one: a stage without that label is
    "unknown", not "negative".
    """
    buffers = list(buffers)
    if not buffers:
        raise ValueError("concat_buffers needs at least one buffer")
    first = buffers[0]
    for other in buffers[1:]:
        if other.kind != first.kind:
            raise ValueError(f"cannot concatenate a {other.kind!r} buffer onto a {first.kind!r} one")
        if other.data.shape[1:] != first.data.shape[1:] or other.data.dtype != first.data.dtype:
            raise ValueError(
                f"per-sample data differ: {other.data.dtype} {other.data.shape[1:]} vs"
                f" {first.data.dtype} {first.data.shape[1:]} (a different latent split or model size?)"
            )
        if (other.features is None) != (first.features is None) or (
            first.features is not None and other.features.shape[1:] != first.features.shape[1:]
        ):
            raise ValueError("stored features must be present, with the same shape, in every buffer or in none")
        if other.holds_clusters != first.holds_clusters:
            raise ValueError("cannot concatenate an aggregate (cluster) buffer with a buffer of rows")
    labels: dict[str, np.ndarray] = {}
    for name in sorted({name for b in buffers for name in b.labels}):
        parts = [b.labels.get(name) for b in buffers]
        if all(p is not None for p in parts):
            labels[name] = np.concatenate(parts)
        else:
            dtype = np.result_type(np.int8, *[p.dtype for p in parts if p is not None])
            labels[name] = np.concatenate(
                [
                    np.full(len(b), UNKNOWN_LABEL, dtype) if p is None else p.astype(dtype)
                    for b, p in zip(buffers, parts, strict=True)
                ]
            )
    return ReplayBuffer(
        kind=first.kind,
        data=np.concatenate([b.data for b in buffers]),
        stage=np.concatenate([b.stage for b in buffers]),
        window=np.concatenate([b.window for b in buffers]),
        labels=labels,
        features=None if first.features is None else np.concatenate([b.features for b in buffers]),
        spread=None if first.spread is None else np.concatenate([b.spread for b in buffers]),
        counts=None if first.counts is None else np.concatenate([b.counts for b in buffers]),
        ledger=[entry for b in buffers for entry in b.ledger],
    )


def buffer_nbytes(path: str | os.PathLike[str]) -> int:
    """Bytes a buffer takes on disk (what a budget in MB, or an MLflow metric, should count)."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file())
