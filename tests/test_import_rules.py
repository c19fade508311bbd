"""The package boundaries of DESIGN §2, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _imports(package: str) -> list[tuple[str, str]]:
    """(module file, imported module) for every import in a package, lazy ones included."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package", ["adapters", "harness_store", "runner"])
def test_lower_packages_never_import_bot(package: str) -> None:
    assert [(f, m) for f, m in _imports(package) if _top(m) == "bot"] == []


def test_runner_imports_nothing_of_ours_but_itself() -> None:
    ours = {"bot", "adapters", "harness_store", "migrations"}
    assert [(f, m) for f, m in _imports("runner") if _top(m) in ours] == []


def test_only_the_registry_imports_concrete_adapters() -> None:
    concrete = [
        (f, m)
        for f, m in _imports("bot")
        if m.startswith("adapters.") and m not in ("adapters.base", "adapters.errors")
    ]
    assert concrete
    assert {f for f, _ in concrete} == {"bot/registry.py"}


# The processes that start the runner's own code in the control plane's process.
RUNNER_STARTERS = {"bot/processes/cli.py", "bot/processes/up.py", "bot/processes/trial.py"}


def test_bot_reaches_the_runner_only_through_its_contract() -> None:
    beyond_contract = [
        (f, m)
        for f, m in _imports("bot")
        if _top(m) == "runner" and m != "runner.contract" and f not in RUNNER_STARTERS
    ]
    assert beyond_contract == []
