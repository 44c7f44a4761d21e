"""What one site may hand to the next over the shared DVC remote, and nothing else (`cssl site push/pull`).

Two (or more) sites share one continual schedule: site A trains stage k on its own cohort, site B trains
stage k+1 on its own. No image may cross: what leaves a site is exactly what the next stage's DVC deps
name from an earlier stage (dvc.yaml pretrain@<k+1>: data/models/<k>, data/buffers/<k>, data/privacy/<k>.cleared.json)
with the audit that cleared it (data/privacy/<k>.json, its verdict <k>.gate.json),
never data/raw, data/interim, data/windowed or data/quality, and never an image replay buffer (kind "image",
er/der/medcoss: it keeps raw slices) unless the operator says so explicitly.

Why these and no more:
- data/models/<k> and data/buffers/<k> are cached DVC outputs: `dvc push <targets>` uploads exactly their
  objects (a directory's .dir manifest and its files), nothing upstream (with_deps and the run cache off:
  the run cache would upload every stage's outputs, windowed slices included).
- data/privacy/<k>.json, <k>.gate.json and <k>.cleared.json (the audit's figures, the gate's verdict and the
  clearance the next stage depends on, all `cache: false`) and dvc.lock travel by git; dvc.lock names the md5
  of every pushed object so the receiving site can verify (`dvc status`) what it pulled. A push without the
  report or the verdict is refused: a buffer leaves only after its audit. So is a buffer whose audit failed,
  whatever privacy.gate.mode says (`warn` lets the local pipeline go on; it does not let the buffer leave),
  unless the operator passes --allow-leaking-buffer, and then the figures are printed beside the push.
- data/checkpoints/<k> stays: it is a site-local resume cache (`cache: false`, `persist: true`, so DVC cannot
  push it anyway), holds optimiser state on top of the weights data/models/<k> already has, and no stage
  depends on it.

The boundary check runs before DVC is imported, on paths from cssl_core/layout.py; DVC does the transfer
through its Python API (Repo.push / Repo.pull with targets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cssl_core.layout import BUFFERS, CHECKPOINTS, INTERIM, MODELS, PRIVACY, QUALITY, RAW, WINDOWED, StagePaths
from cssl_core.privacy.report import read_audit_report
from flows.errors import CliError

# never leave a site: patient images and what is derived from them pixel by pixel, and per-series quality data
PRIVATE_ROOTS = (RAW, INTERIM, WINDOWED, QUALITY)
DVC_ROOTS = (MODELS, BUFFERS)  # cached outputs: `dvc push` carries them
GIT_ROOTS = (PRIVACY,)  # `cache: false` reports: git carries them
IMAGE_FLAG = "--allow-image-buffer"
LEAK_FLAG = "--allow-leaking-buffer"


class BoundaryError(CliError):
    """A push the privacy boundary forbids (one line: which path, why, what to do)."""


@dataclass(frozen=True)
class SiteArtifacts:
    """What crosses for one stage: DVC-pushed targets and the git-tracked files that go with them."""

    stage: str
    dvc_targets: tuple[Path, ...]
    git_files: tuple[Path, ...]
    leaking: tuple[str, ...] = ()  # one line per buffer that failed its audit and crosses by LEAK_FLAG


def stage_artifacts(paths: StagePaths) -> SiteArtifacts:
    """The allowed artifacts of a continual stage: its model, its replay buffer, its audit report."""
    return SiteArtifacts(paths.name, (paths.model, paths.buffer),
                         (paths.privacy_report, paths.privacy_verdict, paths.privacy_clearance))


def relative_target(root: Path, target: Path | str) -> Path:
    """`target` relative to the project root (it may be given absolute, or relative to the root)."""
    path = Path(target)
    absolute = (path if path.is_absolute() else root / path).resolve()
    try:
        return absolute.relative_to(root.resolve())
    except ValueError:
        raise BoundaryError(f"{target}: outside the project {root}; push only data/models/<stage>, "
                            "data/buffers/<stage> or data/privacy/<stage>.json") from None


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _read_json(path: Path, shown: Path, missing: str, rerun: str) -> Any:
    """A JSON file a stage wrote, or one BoundaryError line: `missing` when absent, else unreadable (naming
    `shown` and the stage to `rerun`)."""
    if not path.is_file():
        raise BoundaryError(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BoundaryError(f"{shown}: unreadable ({error}); re-run `dvc repro {rerun}`") from error


def buffer_kind(root: Path, buffer: Path) -> str:
    """The kind a buffer directory's meta.json declares (latent, image or none); refuses a missing one."""
    meta = root / buffer / "meta.json"
    content = _read_json(meta, meta, f"{buffer}: no meta.json in the workspace; run `dvc repro export@{buffer.name}` "
                         "(or `dvc checkout`) first: a buffer is checked before it leaves the site",
                         f"export@{buffer.name}")  # fmt: skip
    if content.get("keeps_raw_images") or content.get("kind") == "image":
        return "image"
    return str(content.get("kind"))


def check_target(root: Path, target: Path, allow_image_buffer: bool = False) -> None:
    """Refuse (BoundaryError, one line) a target the privacy boundary forbids; pass an allowed one.

    Allowed: a stage's model directory, its replay buffer (latent or none; an image buffer only with
    allow_image_buffer) and its audit report. Everything else under data/ is refused: private data by name,
    other outputs (checkpoints, metrics, evaluation rows, reports) as "not a site artifact".
    """
    for private in PRIVATE_ROOTS:
        if _under(target, private):
            raise BoundaryError(
                f"{target}: under {private}, which never leaves the site (privacy boundary: patient images and "
                "per-series data stay where they were acquired); push only data/models/<stage>, "
                "data/buffers/<stage> and data/privacy/<stage>.json (`cssl site push --stage NAME`)"
            )
    if _under(target, CHECKPOINTS):
        raise BoundaryError(f"{target}: checkpoints stay at the site (resume state, optimiser included); "
                            "the stage's weights travel as data/models/<stage>")
    allowed = DVC_ROOTS + GIT_ROOTS
    if not any(root_ in target.parents for root_ in allowed) or len(target.relative_to(target.parts[0]).parts) != 2:
        raise BoundaryError(f"{target}: not a site artifact; push only data/models/<stage>, data/buffers/<stage> "
                            "and data/privacy/<stage>.json")
    if _under(target, BUFFERS) and buffer_kind(root, target) == "image" and not allow_image_buffer:
        raise BoundaryError(
            f"{target}: an image replay buffer (kind image keeps raw slices of the site's patients); it crosses "
            f"only with {IMAGE_FLAG}, after the sites agreed to share images, or use a latent strategy"
        )


def read_verdict(root: Path, report: Path) -> dict[str, Any]:
    """gate@<stage>'s verdict on the audit report `report`; refused (one line) when either is missing or unreadable.

    The report is read as the gate reads it (cssl_core.privacy.report), so both refuse the same files alike.
    """
    stage = report.name.removesuffix(".json")
    try:
        read_audit_report(stage, root)
    except FileNotFoundError as error:
        why = "a stage's model and buffer leave the site only with their privacy audit"
        raise BoundaryError(f"{error}: {why}") from None
    except ValueError as error:  # unreadable, or not a report
        raise BoundaryError(str(error)) from None
    verdict = report.with_name(f"{stage}.gate.json")
    content = _read_json(root / verdict, verdict, f"{verdict}: missing; run `dvc repro gate@{stage}` first: a "
                         "buffer leaves the site only with its audit's verdict", f"gate@{stage}")  # fmt: skip
    if not isinstance(content, dict) or "passed" not in content:
        raise BoundaryError(f"{verdict}: not a privacy gate verdict; re-run `dvc repro gate@{stage}`")
    return content


def leak_summary(report: Path, verdict: dict[str, Any]) -> str | None:
    """None when the verdict says the buffer passed its audit; else one line with the figures that failed it."""
    if verdict.get("passed") is True:
        return None
    reasons = verdict.get("reasons") or ["the verdict records no passing result"]
    return f"{report}: buffer {report.stem} failed its privacy audit: {'; '.join(map(str, reasons))}"


def plan_push(
    root: Path,
    artifacts: SiteArtifacts,
    extra: list[Path] | None = None,
    allow_image_buffer: bool = False,
    allow_leaking_buffer: bool = False,
) -> SiteArtifacts:
    """Check every target (the stage's and any extra ones) and split them into DVC and git transfers.

    Nothing is pushed when any target is refused. Every pushed buffer's audit report must exist (it is the
    privacy gate the next stage depends on, and a buffer without one was never attacked) and travels with it;
    a report without a passing verdict refuses the push unless `allow_leaking_buffer`, whatever
    privacy.gate.mode said locally: `warn` lets a site's own pipeline go on, it does not let the buffer leave.
    """
    # a clearance is absent only when the gate (mode fail) refused the buffer: the verdict below says so
    git_files = [f for f in artifacts.git_files if not f.name.endswith(".cleared.json") or (root / f).is_file()]
    targets = [*artifacts.dvc_targets, *git_files, *(relative_target(root, t) for t in extra or [])]
    for target in targets:
        check_target(root, target, allow_image_buffer=allow_image_buffer)
    reports = [PRIVACY / f"{t.name.split('.')[0]}.json" for t in targets if _under(t, PRIVACY)]
    reports += [PRIVACY / f"{t.name}.json" for t in targets if _under(t, BUFFERS)]
    leaking = []
    for report in dict.fromkeys(reports):
        line = leak_summary(report, read_verdict(root, report))
        if line and not allow_leaking_buffer:
            raise BoundaryError(f"{line}; it does not leave the site (change the buffer: replay.privacy, "
                                f"ssl.strategy, and rerun), or push it anyway with {LEAK_FLAG}")
        if line:
            leaking.append(line)
    decided = [r.with_name(f"{r.stem}{suffix}") for r in reports for suffix in (".gate.json", ".cleared.json")]
    unique = list(dict.fromkeys([*targets, *reports, *(d for d in decided if (root / d).is_file())]))
    return SiteArtifacts(
        artifacts.stage,
        tuple(t for t in unique if any(_under(t, r) for r in DVC_ROOTS)),
        tuple(t for t in unique if any(_under(t, r) for r in GIT_ROOTS)),
        tuple(leaking),
    )


def check_remote(repo: Any, remote: str | None) -> str:
    """The DVC remote a push or pull goes through: `remote` if the project names it, else the default one.

    Without one DVC's pull finds nothing to fetch and reports 0 objects with success, which reads as if the
    other site had sent nothing; a missing remote is the operator's to fix, so it is one line that says how."""
    remotes = sorted(repo.config.get("remote", {}))
    name = remote or repo.config.get("core", {}).get("remote")
    if name is None:
        known = f" (configured: {', '.join(remotes)}; pass --remote NAME or make one the default)" if remotes else ""
        raise BoundaryError(f"no DVC remote is configured{known}; add the shared one first: `dvc remote add -d "
                            "shared s3://BUCKET/PATH` (docs/scale-out.md)")
    if name not in remotes:
        raise BoundaryError(f"DVC remote {name!r} is not configured (configured: {', '.join(remotes) or 'none'}); "
                            "`dvc remote list` shows them")
    return str(name)


def push(root: Path, plan: SiteArtifacts, remote: str | None = None) -> int:
    """`dvc push <targets>` through DVC's API: the targets' cached objects only; returns objects uploaded."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        remote = check_remote(repo, remote)
        return int(repo.push(targets=[str(t) for t in plan.dvc_targets], remote=remote, run_cache=False,
                             with_deps=False))


def pull(root: Path, artifacts: SiteArtifacts, remote: str | None = None) -> int:
    """`dvc pull <targets>` through DVC's API: the versions dvc.lock names, verified; returns files fetched."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        remote = check_remote(repo, remote)
        stats = repo.pull(targets=[str(t) for t in artifacts.dvc_targets], remote=remote, run_cache=False,
                          with_deps=False)
    return int(stats.get("fetched", 0))


def missing_git_files(root: Path, artifacts: SiteArtifacts) -> list[Path]:
    """The git-carried files of a stage this checkout lacks (the other site has not committed or pushed them)."""
    return [f for f in artifacts.git_files if not (root / f).is_file()]
