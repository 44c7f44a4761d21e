"""The layers: cssl_core is the library; tasks/ (the DVC stages) and flows/ (the CLI and drivers) build on it.

cssl_core importing tasks/ or flows/, even inside a function, makes the library depend on the stages that use
it (and on what they import: mlflow, torch, DVC). Read from the source with `ast`, so an import that only runs
on one code path is found without running it.

Nor does cssl_core import an orchestration, tracking or reporting framework (Prefect, DVC, MLflow, Great
Expectations): each is reached through one adapter module under tasks/ (tasks/tracking.py for MLflow,
tasks/gx_expectations.py for GX), so the library runs, and is tested, without them. cssl_core/quality once imported
great_expectations inside its functions; a lazy import is found here all the same.

And the validation that every stage command runs first (cssl_core.config) must stay light: it once imported
torch and MONAI through package __init__ files, which cost each stage ~5 s.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

LIBRARY = "cssl_core"
UPPER_LAYERS = ("tasks", "flows")
# what `cssl check` must not import
HEAVY = ("torch", "monai", "sklearn", "ot", "mlflow", "pandas", "great_expectations")
FRAMEWORKS = ("prefect", "dvc", "mlflow", "great_expectations")  # what cssl_core must not import, even lazily
# the one module of tasks/ that may import each framework a stage uses; every other tasks module goes through it
ADAPTERS = {"mlflow": "tasks.tracking", "great_expectations": "tasks.gx_expectations"}
DYNAMIC_IMPORTS = ("import_module", "__import__")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a (possibly relative) `from ... import` names; a relative one above the top level gives ''."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return ""
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`, at any depth (functions, classes, `if TYPE_CHECKING:`), with
    `from x import y` giving both x and x.y, and importlib.import_module / __import__ of a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            if base:
                found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}" if base else a.name) for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if name in DYNAMIC_IMPORTS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def layer_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    return [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(source, module, is_package)
        if name.split(".")[0] in UPPER_LAYERS
    ]


def test_the_checker_finds_imports_anywhere_in_a_module():
    source = (
        "import os\n"
        "def f():\n"
        "    from tasks.export import keep_labels\n"
        "class C:\n"
        "    def g(self):\n"
        "        import flows.cli as cli\n"
        "        importlib.import_module('tasks.quality')\n"
        "from . import sibling\n"
        "from .. import tasks\n"
    )
    found = layer_violations(source, "cssl_core.config.data")
    assert found == [
        "cssl_core.config.data:3 imports tasks.export",
        "cssl_core.config.data:3 imports tasks.export.keep_labels",
        "cssl_core.config.data:6 imports flows.cli",
        "cssl_core.config.data:7 imports tasks.quality",
    ]
    assert layer_violations("from cssl_core.replay.release import keep_labels\n", "cssl_core.config.replay") == []


def framework_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    return [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(source, module, is_package)
        if name.split(".")[0] in FRAMEWORKS
    ]


def _library_files() -> list[Path]:
    files = sorted((REPO_ROOT / LIBRARY).rglob("*.py"))
    assert len(files) > 50  # the whole library was read, not an empty glob
    return files


def test_cssl_core_imports_nothing_from_tasks_or_flows():
    violations = []
    for path in _library_files():
        module = _module_name(path, REPO_ROOT)
        violations += layer_violations(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert not violations, "cssl_core must not import tasks/ or flows/:\n" + "\n".join(violations)


def test_the_framework_checker_finds_lazy_and_type_checking_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from great_expectations.core import ExpectationSuiteValidationResult\n"
        "def f():\n"
        "    import great_expectations.expectations as gxe\n"
        "    importlib.import_module('mlflow')\n"
        "import dvc.api\n"
        "import prefectlike\n"
    )
    assert sorted(framework_imports(source, "cssl_core.quality.report")) == [
        "cssl_core.quality.report:3 imports great_expectations.core",
        "cssl_core.quality.report:3 imports great_expectations.core.ExpectationSuiteValidationResult",
        "cssl_core.quality.report:5 imports great_expectations.expectations",
        "cssl_core.quality.report:6 imports mlflow",
        "cssl_core.quality.report:7 imports dvc.api",
    ]


def test_cssl_core_imports_no_orchestration_tracking_or_validation_framework():
    violations = []
    for path in _library_files():
        module = _module_name(path, REPO_ROOT)
        violations += framework_imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert not violations, (
        f"cssl_core must not import {', '.join(FRAMEWORKS)} (use an adapter under tasks/):\n" + "\n".join(violations)
    )


def test_each_stage_framework_is_imported_by_its_adapter_only():
    """A second module of tasks/ or flows/ importing GX (or MLflow) would be a second adapter, and the next step
    back into cssl_core; the stages reach each framework through its one module."""
    files = sorted([*(REPO_ROOT / "tasks").glob("*.py"), *(REPO_ROOT / "flows").glob("*.py")])
    found = [
        f"{module}:{line} imports {name}"
        for path in files
        if (module := _module_name(path, REPO_ROOT))
        for line, name in imported_modules(path.read_text(encoding="utf-8"), module)
        if ADAPTERS.get(name.split(".")[0], module) != module
    ]
    assert not found, "only " + ", ".join(f"{a} may import {f}" for f, a in ADAPTERS.items()) + ":\n" + "\n".join(found)


def test_no_stage_module_imports_another_but_the_adapters():
    """tasks/ is one thin module per stage: code two stages share (the buffer rows export writes and the audit
    rebuilds, the quality reports, the metric tree) lives in cssl_core, so no stage runs another stage's code.
    The framework adapters are the exception: tasks/tracking.py, the one module that calls MLflow, and
    tasks/gx_expectations.py, the one that calls Great Expectations."""
    files = sorted((REPO_ROOT / "tasks").glob("*.py"))
    assert len(files) > 10
    allowed = {"tasks", *ADAPTERS.values()}
    found = [
        f"tasks/{path.name}:{line} imports {name}"
        for path in files
        for line, name in imported_modules(path.read_text(encoding="utf-8"), _module_name(path, REPO_ROOT))
        if name.split(".")[0] == "tasks"
        and name not in allowed
        and not name.startswith(tuple(f"{a}." for a in allowed))
    ]
    assert not found, "a stage module imports another stage module:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        # what every stage command runs first (flows/cli.py _checked_params), and `cssl check`
        "from cssl_core.config import ProjectConfig\n"
        "from cssl_core.config.project import compare_problems\n"
        "from cssl_core.config.load import load_params\n"
        "params = load_params(Path('params.yaml'))\n"
        "ProjectConfig.from_params(params)\n"
        "compare_problems(params)\n",
        # the light halves of the packages whose __init__ files are lazy
        "import cssl_core.models, cssl_core.train, cssl_core.strategies, cssl_core.replay, cssl_core.privacy\n"
        "from cssl_core.models.config import MAEConfig\n"
        "from cssl_core.train.config import TrainConfig\n"
        "from cssl_core.strategies.options import STRATEGY_OPTIONS\n"
        "from cssl_core.replay.release import ReleaseConfig, keep_labels\n"
        "from cssl_core.replay.selection import SELECTORS\n"
        "from cssl_core.privacy.settings import AuditConfig, audit_settings, gate_settings\n"
        "import cssl_core.config.quality, cssl_core.privacy.gate, cssl_core.privacy.report\n",
    ],
    ids=["check", "light-modules"],
)
def test_validating_params_imports_no_torch_monai_or_sklearn(code):
    probe = f"import json, sys\nfrom pathlib import Path\n{code}print(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}
    assert not loaded & set(HEAVY), f"imported {sorted(loaded & set(HEAVY))}"


def test_lazy_packages_still_export_their_names():
    import cssl_core.models as models
    import cssl_core.privacy as privacy
    import cssl_core.strategies as strategies
    from cssl_core.models.config import MAEConfig
    from cssl_core.privacy.settings import AuditConfig

    assert models.MAEConfig is MAEConfig and privacy.AuditConfig is AuditConfig
    assert "MaskedAutoencoder" in dir(models) and "build_strategy" in strategies.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = strategies.nope
