"""Every dvc.yaml stage lists, as deps, the code its `cssl <command>` runs.

Why: DVC re-runs a stage only when a listed dep changes. The code deps were written by hand and drifted (pretrain
missed cssl_core/replay and two task modules), so an edit to code a stage runs left its outputs
stale without a word. Here the code a stage runs is read from the source with `ast`: the `cssl` command's entry
modules (the `from tasks.X import ...` / `from flows.X import ...` inside its function in flows/cli.py, so a new
command is covered without editing this file), then everything they import from cssl_core, tasks and flows, at
any depth (function bodies included), through the lazy package __init__ files (cssl_core/_lazy.py).

Not required as deps: the shared CLI plumbing every stage command runs before its own code, i.e. flows/cli.py, its
module-level imports (flows/errors.py) and what its helper functions import (the whole-params validation,
cssl_core/config, its load.py included, via _checked_params). It dispatches, validates and reports; it computes no
output. Listing it would re-run the whole DAG on a new validation rule or a reworded error message, and a module
of it that a stage's own code does use (cssl_core/config/load.py's `load_params`, say) is required through that stage's
closure like any other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

from tests.helpers import REPO_ROOT

PACKAGES = ("cssl_core", "tasks", "flows")
CLI = "flows.cli"
# run by stage commands before their own code
PLUMBING_HELPERS = ("_checked_params", "_checked_config", "_check_params_if_present")


# -- modules and their imports ---------------------------------------------------------------------------------


def module_path(name: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of module `name` (a package's __init__.py), or None when it is not a repo module."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def lazy_names(name: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """{exported name: submodule} of a package whose __init__ calls cssl_core._lazy.lazy_exports(__name__, {...})."""
    path = module_path(name, root)
    if path is None or path.name != "__init__.py":
        return {}
    where: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        func = node.func if isinstance(node, ast.Call) else None
        func_name = getattr(func, "id", None) or getattr(func, "attr", None)
        if func_name == "lazy_exports" and len(node.args) >= 2:
            for module, names in ast.literal_eval(node.args[1]).items():
                where.update(dict.fromkeys(names, module))
    return where


def _with_parents(name: str) -> list[str]:
    """`import a.b.c` runs a, a.b and a.b.c."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:`: never run, so no dep."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if test is not None and (getattr(test, "id", None) or getattr(test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _add(found: dict[str, bool], name: str) -> None:
    """Record `name` as imported by name (leaf) and its parent packages as run on the way (not leaves)."""
    *parents, leaf = _with_parents(name)
    for parent in parents:
        found.setdefault(parent, False)
    found[leaf] = True


def imports_of_tree(tree: ast.AST, module: str, root: Path = REPO_ROOT, is_package: bool = False) -> dict[str, bool]:
    """{repo module: imported by name (else only run as the parent package of one)} for the code in `tree`
    (module `module`), at any depth, `if TYPE_CHECKING:` blocks left out."""
    skipped = _type_checking_nodes(tree)
    found: dict[str, bool] = {}
    bound: dict[str, str] = {}  # local name -> repo module, for `alias.name` on a lazy package
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                _add(found, alias.name)
                top = alias.name.split(".")[0]
                bound[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            _add(found, base)
            for alias in node.names:
                if alias.name == "*":
                    for lazy in set(lazy_names(base, root).values()):
                        _add(found, lazy)
                    continue
                for member in _resolve_member(base, alias.name, root):
                    _add(found, member)
                if module_path(f"{base}.{alias.name}", root) is not None:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in ast.walk(tree):  # attribute chains on a bound module: cssl_core.models.build_mae, replay.select
        if id(node) in skipped or not isinstance(node, ast.Attribute):
            continue
        chain: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            chain.insert(0, current.attr)
            current = current.value
        if not isinstance(current, ast.Name) or current.id not in bound:
            continue
        target = bound[current.id]
        for attr in chain:
            members = _resolve_member(target, attr, root)
            for member in members:
                _add(found, member)
            if not members or module_path(f"{target}.{attr}", root) is None:
                break
            target = f"{target}.{attr}"
    return {name: leaf for name, leaf in found.items() if module_path(name, root) is not None}


def _resolve_member(package: str, member: str, root: Path) -> list[str]:
    """What `from package import member` (or `package.member`) imports beyond the package: a submodule, or the
    module a lazy __init__ takes the name from; nothing for an ordinary attribute."""
    if module_path(f"{package}.{member}", root) is not None:
        return [f"{package}.{member}"]
    lazy = lazy_names(package, root).get(member)
    return [lazy] if lazy else []


@cache
def imports_of(module: str, root: Path = REPO_ROOT) -> tuple[tuple[str, bool], ...]:
    path = module_path(module, root)
    assert path is not None, module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return tuple(imports_of_tree(tree, module, root, is_package=path.name == "__init__.py").items())


def closure(modules: Iterable[str], root: Path = REPO_ROOT, stop: frozenset[str] = frozenset()) -> set[str]:
    """`modules` and every repo module they import, transitively. A module in `stop` (the CLI plumbing) counts only
    where some other module imports it by name, and what it imports in turn is not followed."""
    seen: set[str] = set()
    todo = [(m, True) for m in modules if module_path(m, root) is not None]
    while todo:
        name, leaf = todo.pop()
        if name in seen or (name in stop and not leaf):
            continue
        seen.add(name)
        if name not in stop:
            todo.extend(imports_of(name, root))
    return seen


def runs_nothing(path: Path) -> bool:
    """A module of nothing but a docstring (the empty package __init__ files): editing it cannot change a result,
    and once it holds code the check requires it like any other module."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    docstring = bool(body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    return len(body) == int(docstring)


# -- the cssl commands ----------------------------------------------------------------------------------------------


def _command_name(func: ast.FunctionDef) -> str | None:
    """The `cssl` sub-command a function defines (`@app.command()` / `@app.command("name")`), else None."""
    for decorator in func.decorator_list:
        if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
            continue
        if decorator.func.attr != "command" or getattr(decorator.func.value, "id", None) != "app":
            continue
        if decorator.args and isinstance(decorator.args[0], ast.Constant):
            return str(decorator.args[0].value)
        return func.name.replace("_", "-")  # Typer's default name
    return None


def command_entries(root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """{`cssl` command: the repo modules its function in flows/cli.py imports (its entry modules)}."""
    tree = ast.parse((root / "flows" / "cli.py").read_text(encoding="utf-8"))
    entries: dict[str, set[str]] = {}
    for func in tree.body:
        if isinstance(func, ast.FunctionDef) and (name := _command_name(func)) is not None:
            entries[name] = set(imports_of_tree(func, CLI, root)) - {CLI}
    return entries


def plumbing(root: Path = REPO_ROOT) -> frozenset[str]:
    """flows.cli, its module-level imports and what its params-checking helpers import, with all they import: the
    code every stage command runs before its own (module docstring)."""
    tree = ast.parse((root / "flows" / "cli.py").read_text(encoding="utf-8"))
    top_level = ast.Module(body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[])
    helpers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in PLUMBING_HELPERS]
    assert len(helpers) == len(PLUMBING_HELPERS), f"flows/cli.py no longer defines all of {PLUMBING_HELPERS}"
    direct = {*imports_of_tree(top_level, CLI, root)}.union(*(imports_of_tree(h, CLI, root) for h in helpers))
    return frozenset({CLI} | closure(direct - {CLI}, root))  # flows.cli not followed: its commands are not plumbing


# -- dvc.yaml ---------------------------------------------------------------------------------------------------


def stage_specs(dvc_yaml: Mapping) -> dict[str, tuple[str, list[str]]]:
    """{top-level stage: (cmd, deps)} with foreach (`do:`) and matrix stages taken as their one template: the
    code deps never depend on ${item}/${key}, and the command name is the same in every generated stage."""
    specs = {}
    for name, stage in dvc_yaml["stages"].items():
        body = stage["do"] if "foreach" in stage else stage
        deps = [next(iter(d)) if isinstance(d, Mapping) else str(d) for d in body.get("deps", [])]
        specs[name] = (body["cmd"], deps)
    return specs


def cssl_command(cmd: str) -> str:
    words = cmd.split()
    assert len(words) >= 2 and words[0] == "cssl", f"not a `cssl <command>` stage: {cmd!r}"
    return words[1]


def _covered(file: str, deps: Iterable[str]) -> bool:
    return any(file == dep.rstrip("/") or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def stage_files(paths: Iterable[Path | None], root: Path = REPO_ROOT) -> list[str]:
    """The repo files of a stage's closure. A stage that takes the typed ProjectConfig (imports cssl_core.config)
    reads values every module of cssl_core/config computed (defaults, merged overrides): the whole package is its
    code, though the objects, not imports, carry it there."""
    files = {p.relative_to(root).as_posix() for p in paths if p is not None and not runs_nothing(p)}
    if "cssl_core/config/__init__.py" in files:
        config = root / "cssl_core" / "config"
        files |= {p.relative_to(root).as_posix() for p in config.glob("*.py") if not runs_nothing(p)}
    return sorted(files)


def missing_code_deps(stages: Mapping[str, tuple[str, list[str]]], root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """{stage: the repo files its command runs that no dep covers (sorted)}, only stages with some missing."""
    entries, stop = command_entries(root), plumbing(root)
    missing: dict[str, list[str]] = {}
    for stage, (cmd, deps) in stages.items():
        command = cssl_command(cmd)
        assert command in entries, f"stage {stage}: `cssl {command}` is not a command of flows/cli.py"
        assert entries[command], f"stage {stage}: `cssl {command}` imports no tasks/flows module in flows/cli.py"
        paths = [module_path(m, root) for m in closure(entries[command], root, stop)]
        files = stage_files(paths, root)
        gaps = [f for f in files if not _covered(f, deps)]
        if gaps:
            missing[stage] = gaps
    return missing


def stale_code_deps(stages: Mapping[str, tuple[str, list[str]]], root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """{stage: code deps (under cssl_core/, tasks/, flows/) that do not exist or cover no file its command runs}:
    a stale dep re-runs the stage on edits to code it never runs (or fails `dvc repro` when the file is gone)."""
    entries, stop = command_entries(root), plumbing(root)
    stale: dict[str, list[str]] = {}
    for stage, (cmd, deps) in stages.items():
        paths = [module_path(m, root) for m in closure(entries[cssl_command(cmd)], root, stop)]
        files = stage_files(paths, root)
        code = [d for d in deps if d.split("/")[0] in PACKAGES]
        unused = [d for d in code if not (root / d).exists() or not any(_covered(f, [d]) for f in files)]
        if unused:
            stale[stage] = unused
    return stale


def report(missing: Mapping[str, list[str]]) -> str:
    lines = [f"  {stage}: {', '.join(files)}" for stage, files in sorted(missing.items())]
    return "dvc.yaml stages run code they do not list as deps (add the file or its directory):\n" + "\n".join(lines)


# -- tests ------------------------------------------------------------------------------------------------------------


def test_every_stage_lists_the_code_it_runs():
    stages = stage_specs(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8")))
    assert {"pretrain", "export", "audit", "report"} <= set(stages)
    missing = missing_code_deps(stages)
    assert not missing, report(missing)


def test_no_stage_lists_code_it_does_not_run():
    stages = stage_specs(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8")))
    stale = stale_code_deps(stages)
    assert not stale, "dvc.yaml stages list code deps they do not run (remove them):\n" + report(stale)


def test_a_stale_code_dep_is_reported():
    stages = stage_specs(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8")))
    cmd, deps = stages["evaluate"]
    stale = stale_code_deps({"evaluate": (cmd, [*deps, "cssl_core/distill", "tasks/gone.py"])})
    assert stale == {"evaluate": ["cssl_core/distill", "tasks/gone.py"]}


def test_a_stage_missing_a_code_dep_is_reported():
    """The check can fail: pretrain without cssl_core/replay or cssl_core/layout.py."""
    stages = stage_specs(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8")))
    cmd, deps = stages["pretrain"]
    dropped = {"cssl_core/replay", "cssl_core/layout.py", "tasks/pretrain.py"}
    assert dropped <= set(deps), "dvc.yaml changed: pick deps pretrain lists"
    missing = missing_code_deps({"pretrain": (cmd, [d for d in deps if d not in dropped])})
    assert set(missing) == {"pretrain"}
    assert {"cssl_core/layout.py", "tasks/pretrain.py", "cssl_core/replay/buffer.py"} <= set(missing["pretrain"])
    assert all(f.startswith(tuple(dropped)) for f in missing["pretrain"]), missing
    assert "pretrain: " in report(missing) and "cssl_core/layout.py" in report(missing)


def test_the_closure_follows_lazy_exports_and_function_level_imports():
    """`from cssl_core.strategies import STRATEGIES` imports cssl_core/strategies/registry.py (a lazy name), and the
    imports inside the command functions are what map a command to its task module."""
    tree = ast.parse("def f():\n    from cssl_core.strategies import STRATEGIES\n")
    found = imports_of_tree(tree, "tasks.example")
    assert found["cssl_core.strategies.registry"] and not found["cssl_core"]
    assert "cssl_core.strategies.base" not in found  # only what is imported, not every lazy name
    entries = command_entries()
    assert entries["pretrain"] == {"tasks", "tasks.pretrain"}
    assert "flows.compare" in entries["compare"]
    stop = plumbing()
    assert {"flows.cli", "flows.errors", "cssl_core.config", "cssl_core.config.project"} <= stop
    assert "cssl_core.config.load" in stop
    # importing cssl_core/config/quality.py runs the package __init__ on the way, but does not import it by name
    found = imports_of_tree(ast.parse("from cssl_core.config.quality import required_series\n"), "tasks.example")
    assert found["cssl_core.config.quality"] and not found["cssl_core.config"]
    # tasks/screen.py takes ProjectConfig from cssl_core/config/__init__.py by name and calls
    # cssl_core/config/quality.py: both required, but not the whole-params validation the package __init__
    # imports in turn (cssl_core/config/project.py and all it imports)
    needed = closure({"tasks.screen"}, stop=stop)
    assert {"cssl_core.config", "cssl_core.config.quality"} <= needed
    assert "cssl_core.config.project" not in needed
