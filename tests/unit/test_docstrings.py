"""Docstrings are the reference: every public function and class of the package says what it
is, and in Google style (as Optuna and KerasTuner write them) what it takes, gives and raises.
The rule holds for all of cvsweep/, the Hydra plugins and the RunPod worker's handler."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "cvsweep"
# The folders and modules whose public functions and classes are held to the rule, as paths
# below the repository: the whole package, and the code that runs outside it as its entry points.
# remote/emulator.py is left out: a stand-in for RunPod's service that only tests use.
DOCUMENTED = (
    "cvsweep",
    "hydra_plugins",
    "remote/handler.py",
)
NO_PARAMETERS = {"self", "cls"}


def _modules() -> list[Path]:
    found = set()
    for entry in DOCUMENTED:
        path = REPO / entry
        found |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return sorted(found)


def _public(tree: ast.Module):
    """(qualified name, node) of each public module-level function and class, and of each
    public method of a public class."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and not member.name.startswith("_"):
                        yield f"{node.name}.{member.name}", member


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = function.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return [name for name in names if name not in NO_PARAMETERS]


def _is_property(function) -> bool:
    return any(ast.unparse(d).split(".")[-1] in ("property", "cached_property", "setter") for d in function.decorator_list)


def _returns_a_value(function) -> bool:
    """Whether the function's own body (not a nested function's) returns something."""
    stack = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _problems(path: Path) -> list[str]:
    problems = []
    for name, node in _public(ast.parse(path.read_text())):
        doc = ast.get_docstring(node)
        if not doc:
            problems.append(f"{name}: no docstring")
            continue
        if isinstance(node, ast.ClassDef) or _is_property(node):
            continue  # a class's or a property's one line may do; its methods carry the sections
        if _parameters(node) and "Args:" not in doc:
            problems.append(f"{name}: takes {', '.join(_parameters(node))} but has no Args: section")
        if _returns_a_value(node) and "Returns:" not in doc and "Yields:" not in doc:
            problems.append(f"{name}: returns a value but has no Returns: section")
    return problems


def test_the_documented_list_names_real_files():
    assert [entry for entry in DOCUMENTED if not (REPO / entry).exists()] == []


def test_every_module_of_the_package_is_held_to_the_rule():
    assert set(PACKAGE.rglob("*.py")) <= set(_modules())


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_public_functions_and_classes_are_documented(path):
    problems = _problems(path)
    assert not problems, f"{path.relative_to(REPO)}:\n  " + "\n  ".join(problems)


def test_the_rule_sees_what_it_is_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('''
def bare(x):
    return x


def no_args(x):
    """A summary."""


def no_returns(x):
    """A summary.

    Args:
        x: A value.
    """
    return x


def documented(x):
    """A summary.

    Args:
        x: A value.

    Returns:
        ``x``.
    """
    def inner():
        return 1
    return x


def _private(x):
    return x


class Thing:
    """A thing."""

    @property
    def size(self):
        """Its size."""
        return 1

    def method(self, y):
        return y
''')
    assert _problems(sample) == [
        "bare: no docstring",
        "no_args: takes x but has no Args: section",
        "no_returns: returns a value but has no Returns: section",
        "Thing.method: no docstring",
    ]
