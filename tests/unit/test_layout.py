"""The package's layout is its architecture: each layer is a subpackage of cvsweep/, and a
module imports only from its own layer and the layers below it (function-level imports too).
A new module goes where its imports allow; a test here fails if it reaches upwards, or if
modules import each other in a circle (a function-level import closes a circle too)."""

from __future__ import annotations

import ast
import re
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
    # The command and its subcommands: the top, free to import any layer.
    "cli": {"config", "data", "models", "training", "execution", "study", "reporting", "sweep", "service", "compose",
            "help_text"},
}
# Shared by every layer and importing nothing of cvsweep.
FOUNDATIONS = {"jsonio", "compat", "layout", "errors"}
# Beside the layers: ``python -m cvsweep``, and composing a config as the command does (which the
# service needs too, so it cannot live in cli).
COMMANDS = {"__init__", "__main__", "help_text", "compose"}


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


def test_no_two_modules_share_a_name():
    """A module's file name says what it is, once: ``app`` or ``datasets`` in two places reads
    as one thing in tracebacks, imports and conversation."""
    by_name = {}
    for path in PACKAGE.rglob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            by_name.setdefault(path.stem, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


def test_only_python_m_cvsweep_imports_the_command():
    """cli is the top layer: the entry points reach it, nothing else does."""
    importers = {
        str(path.relative_to(REPO))
        for root in ("cvsweep", "hydra_plugins", "remote")
        for path in (REPO / root).rglob("*.py")
        if "cli" in _cvsweep_imports(path) and "cvsweep/cli/" not in str(path)
    }
    assert importers <= {"cvsweep/__main__.py"}


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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolved(name: str) -> str | None:
    """The cvsweep module ``name`` stands for: itself, or the package or module above it (for
    ``from cvsweep.x import y`` where y is a function or class)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _module_imports(module: str) -> set[str]:
    """The cvsweep modules ``module`` imports, at module level or inside functions; a name
    imported from a package counts as its submodule when it is one."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_resolved(alias.name) for alias in node.names if alias.name.startswith("cvsweep")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per further dot
                above = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(above + ([base] if base else []))
            if not base.startswith("cvsweep"):
                continue
            for alias in node.names:
                found.add(_resolved(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else _resolved(base))
    return found - {None, module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles a depth-first search of ``graph`` meets: one per import back onto its path
    (none exactly when the graph has no circle)."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_module_imports_itself_through_others():
    graph = {module: _module_imports(module) for module in MODULES}
    circles = _cycles(graph)
    assert not circles, "these modules import each other in a circle: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_circle_check_sees_function_level_and_package_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert "cvsweep.training.tf_runtime" in _module_imports("cvsweep.training.train")
    assert "cvsweep.config.schema" in _module_imports("cvsweep.training.failures")


def test_foundations_import_nothing_of_cvsweep():
    assert {name: _cvsweep_imports(PACKAGE / f"{name}.py") for name in FOUNDATIONS} == {n: set() for n in FOUNDATIONS}


def test_every_module_path_the_code_names_exists():
    """A docstring or comment that points at cvsweep/<something>.py points at a real file."""
    named = {
        (str(path.relative_to(REPO)), match)
        for root in ("cvsweep", "hydra_plugins", "remote")
        for path in (REPO / root).rglob("*.py")
        for match in re.findall(r"cvsweep/[\w/]+\.py", path.read_text())
    }
    missing = sorted(f"{where}: {name}" for where, name in named if not (REPO / name).exists())
    assert not missing, "these name files that do not exist:\n" + "\n".join(missing)


def test_the_sweeper_plugin_is_a_thin_face_over_a_loop_of_short_steps():
    """The sweep's logic lives in cvsweep/sweep/ (where the layer checks see it); the plugin only
    builds the context and calls the loop, and each of the loop's steps reads at a glance."""
    plugin = REPO / "hydra_plugins" / "cvsweep_sweeper" / "cvsweep_sweeper.py"
    assert len(plugin.read_text().splitlines()) <= 80
    loop = ast.parse((PACKAGE / "sweep" / "loop.py").read_text())
    lengths = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(loop)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert {name: n for name, n in lengths.items() if n > 40} == {}
