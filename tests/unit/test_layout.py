"""The package's layout is its architecture: each layer is a subpackage of cvsweep/, and a
module imports only from its own layer and the layers below it (function-level imports too).
A new module goes where its imports allow; a test here fails if it reaches upwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "cvsweep"
# Lowest first. Each layer may import the layers before it, except where a row says less.
LAYERS = {
    "config": set(),  # the schema and the tables derived from it
    "data": {"config"},
    "models": {"config", "data"},  # a model is checked against its data's shape
    "training": {"config", "data", "models"},
    "execution": {"config", "data", "models", "training"},
    "study": {"config", "data"},
    "reporting": {"config", "training", "study"},
    "sweep": {"config", "data", "models", "training", "execution", "study", "reporting"},
    # The service runs sweeps as the command does (in child processes) and composes their
    # configs as the command would (compose).
    "service": {"config", "data", "models", "training", "execution", "study", "reporting", "sweep", "compose"},
}
# Shared by every layer and importing nothing of cvsweep.
FOUNDATIONS = {"jsonio", "compat", "layout", "errors"}
# The commands: the top, free to import any layer.
COMMANDS = {"__init__", "__main__", "app", "help_text", "compose", "compare", "evaluate", "plot", "serve", "deploy",
            "datasets"}


def _cvsweep_imports(path: Path) -> set[str]:
    """The first part below cvsweep of everything ``path`` imports from cvsweep."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cvsweep":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cvsweep.")}
    return found


def test_every_module_lives_in_a_layer_or_is_a_command_or_foundation():
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat <= COMMANDS | FOUNDATIONS, f"put {sorted(flat - COMMANDS - FOUNDATIONS)} into a layer's subpackage"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_layer_imports_only_the_layers_below_it(layer):
    allowed = LAYERS[layer] | {layer} | FOUNDATIONS
    reaching_up = {
        str(path.relative_to(REPO)): sorted(_cvsweep_imports(path) - allowed)
        for path in (PACKAGE / layer).rglob("*.py")
        if _cvsweep_imports(path) - allowed
    }
    assert not reaching_up, f"{layer} may import {sorted(allowed)}; these reach further: {reaching_up}"


def test_foundations_import_nothing_of_cvsweep():
    assert {name: _cvsweep_imports(PACKAGE / f"{name}.py") for name in FOUNDATIONS} == {n: set() for n in FOUNDATIONS}
