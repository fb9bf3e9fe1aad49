"""The core's floors: a module never imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import lamp_harness

PACKAGE = Path(lamp_harness.__file__).parent


def _imports(module: str) -> set[str]:
    """Every ``lamp_harness`` module ``module`` imports, at any depth of its code (lazy imports
    inside functions included: they close a circle just as well)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lamp_harness"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lamp_harness"))
    return found


def test_the_prediction_loop_sits_below_the_runner_and_the_trainer() -> None:
    assert not {"lamp_harness.runner", "lamp_harness.training"} & _imports("prediction")
    assert "lamp_harness.prediction" in _imports("runner")
    assert "lamp_harness.prediction" in _imports("training")


def test_the_trainer_does_not_import_the_runner_back() -> None:
    assert "lamp_harness.training" in _imports("runner")
    assert "lamp_harness.runner" not in _imports("training")
