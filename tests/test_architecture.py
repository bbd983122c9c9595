"""The house rules, checked on the source: layers, where each framework lives, sizes.

``pipelines`` may import ``models`` and ``features``; ``models`` may import
``features``; ``features`` imports neither. Prefect lives in the
orchestration modules, MLflow in the tracking adapter, typer in the CLI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "pipelines")
# Allowed territory.* imports per layer.
LAYERS = {"features": {"features"}, "models": {"features", "models"},
          "pipelines": {"features", "models", "pipelines"}}
# Third-party frameworks and the only modules that may import them.
HOMES = {
    "prefect": {"pipelines/flows.py", "pipelines/deploy.py", "pipelines/dask_runner.py"},
    "prefect_dask": {"pipelines/flows.py", "pipelines/deploy.py", "pipelines/dask_runner.py"},
    "mlflow": {"models/tracking/__init__.py", "models/tracking/legacy.py",
               "models/tracking/registry.py", "models/tracking/monitoring.py",
               "models/tracking/tables.py", "models/tracking/reconcile_record.py"},  # the adapter
    "typer": {"pipelines/cli.py"},
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(source: str) -> list[str]:
    """Every module name ``source`` imports, at any depth (lazy imports included)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _breaches(rel: str, source: str) -> list[str]:
    """The imports of module ``rel`` (e.g. ``models/x.py``) that break the layers or homes."""
    layer, found = rel.split("/")[0], []
    for name in _imports(source):
        parts = name.split(".")
        if parts[0] == "territory" and len(parts) > 1 and parts[1] not in LAYERS[layer]:
            found.append(f"{rel} imports {name}: {layer} may not")
        if parts[0] in PACKAGES:
            found.append(f"{rel} imports '{name}': use territory.{name}")
        home = HOMES.get(parts[0])
        if home is not None and rel not in home:
            found.append(f"{rel} imports {name}; only {sorted(home)} may")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers_and_frameworks_stay_home(path):
    assert _breaches(str(path.relative_to(ROOT)), path.read_text()) == []


def test_the_rules_catch_a_breach():
    lazy = "def f():\n    from territory.pipelines import flows\n    import mlflow\n"
    assert len(_breaches("features/bad.py", lazy)) == 2
    assert len(_breaches("models/bad.py", "import models.forecast\nimport typer\n")) == 2
    assert _breaches("pipelines/cli.py", "import typer\nfrom territory.models import x\n") == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{path.name} is too long"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            assert lines <= MAX_FUNCTION_LINES, f"{path.name}:{node.name} has {lines} lines"


def test_nothing_generic_is_importable_at_top_level(tmp_path):
    """Installed under ``territory.``: no top-level features/models/pipelines package."""
    code = ("import importlib.util, sys\n"
            "sys.path = [p for p in sys.path if p not in ('', '.')]\n"
            f"print([n for n in {PACKAGES!r} if importlib.util.find_spec(n)])\n"
            "import territory.pipelines.flows\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
