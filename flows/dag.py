"""The pipeline's stage graph, read from DVC itself.

The Prefect flow must run exactly what `dvc.yaml` defines: a second, hand-written copy of the DAG would
drift. DVC's own index gives the stages (with foreach/matrix expanded) and the edges between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageNode:
    name: str  # DVC addressing, e.g. "window@phantom_a-lung"
    upstream: tuple[str, ...]  # stages whose outputs this one depends on
    cmd: str


def stage_order(project_dir: Path) -> list[StageNode]:
    """Every pipeline stage of dvc.yaml in a topological order (upstream first), ties broken by name."""
    import networkx as nx
    from dvc.exceptions import CyclicGraphError
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        try:
            graph = repo.index.graph  # edges point from a stage to the stages it depends on
        except CyclicGraphError as error:
            raise ValueError(cycle_message(project_dir, error)) from error
        stages = [node for node in graph.nodes if getattr(node, "cmd", None)]
        names = {stage: stage.name for stage in stages}  # one dvc.yaml at the root: names are unique
        dependency_first = graph.reverse(copy=True).subgraph(stages)
        ordered = nx.lexicographical_topological_sort(dependency_first, key=lambda stage: names[stage])
        return [
            StageNode(
                name=names[stage],
                upstream=tuple(sorted(names[dep] for dep in graph.successors(stage) if dep in names)),
                cmd=stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd),
            )
            for stage in ordered
        ]


def cycle_message(project_dir: Path, error: Exception) -> str:
    """DVC says "Same item(s) are defined as both a dependency and an output"; say what to fix instead."""
    text = str(error)
    stages = ", ".join(sorted(text.rsplit(": ", 1)[-1].rstrip(".").split(", ")))
    return (
        f"{Path(project_dir) / 'dvc.yaml'} with its params.yaml makes a cycle through stages {stages}: each waits "
        "for another's output; give every continual.stages entry in params.yaml a `prev` that is `init` or an "
        "earlier stage"
    )
