"""No module mailboxes: state one part of cvsweep sets for another to take lives on an object
(a sweep's on its SweepContext, cvsweep/sweep/context.py), not at module level, where only a
whole sweep notices when it breaks.

Scanned in every module of cvsweep/: ``global`` statements; module-level names bound to a
mutable container (a dict, list or set literal or call, a defaultdict, a deque) or a
threading primitive that the module then changes; and ContextVars, of which the package has
exactly one, the active sweep. Caches (filled on first use, read back by the same code, safe to
drop) are listed below with their reason."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "cvsweep"
MUTATING_METHODS = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "remove",
                    "discard", "clear", "set", "put", "appendleft"}
CONTAINER_CALLS = {"dict", "list", "set", "defaultdict", "deque", "OrderedDict", "Counter", "Event", "Queue"}
# (module, name): why it is not a mailbox. (cvsweep/data/sources.py's ``_sources`` and ``_splits``,
# caches of loaded and split datasets, are ``_Cache`` objects that keep their own state.)
ALLOWED = {
    ("cvsweep/data/image_folder.py", "_memory"): "a cache of decoded image folders, keyed by their identity",
    ("cvsweep/data/image_folder.py", "_keys"): "the cache's order of use, for evicting its oldest entry",
}
THE_CONTEXT_VAR = ("cvsweep/sweep/context.py", "_ACTIVE")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(REPO)), ast.parse(path.read_text())


def _module_level(tree: ast.Module):
    """Assignments at module level, also inside a top-level if / try."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.If, ast.Try)):
            stack += node.body + node.orelse + getattr(node, "finalbody", []) + [
                n for h in getattr(node, "handlers", []) for n in h.body]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value


def _called(value: ast.AST) -> str:
    func = value.func if isinstance(value, ast.Call) else None
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_container(value: ast.AST) -> bool:
    literal = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    return isinstance(value, literal) or _called(value) in CONTAINER_CALLS


def _mutated(tree: ast.Module, name: str) -> bool:
    for node in ast.walk(tree):
        target = None
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            for t in getattr(node, "targets", None) or [node.target]:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == name:
                    return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if isinstance(target, ast.Name) and target.id == name and node.func.attr in MUTATING_METHODS:
                return True
    return False


def test_no_module_uses_global_statements():
    found = [f"{module}:{node.lineno} global {', '.join(node.names)}" for module, tree in _modules()
             for node in ast.walk(tree) if isinstance(node, ast.Global)]
    assert not found, f"module state changed through `global`; keep it on an object: {found}"


def test_no_module_level_container_is_changed_except_the_listed_caches():
    found = {(module, name) for module, tree in _modules() for name, value in _module_level(tree)
             if _is_container(value) and _mutated(tree, name)}
    assert found - set(ALLOWED) == set(), "module-level state that is changed (a mailbox?); put it on an object"
    assert set(ALLOWED) - found == set(), "an allowed cache is gone: drop it from ALLOWED"


def test_the_active_sweep_is_the_one_context_var():
    found = {(module, name) for module, tree in _modules() for name, value in _module_level(tree)
             if _called(value) == "ContextVar"}
    assert found == {THE_CONTEXT_VAR}


def test_the_scan_sees_a_mailbox():
    tree = ast.parse("_pending = {}\n\ndef put(key, value):\n    _pending[key] = value\n")
    assert [(n, _mutated(tree, n)) for n, v in _module_level(tree) if _is_container(v)] == [("_pending", True)]
