"""One list of settings: a default lives in cvsweep/config/schema.py only. A conf/ YAML file holds
what differs from the schema (or from the preset it extends), and no module keeps a
hand-written list of a schema's field names."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest
import yaml
from conftest import CONF_DIR, REPO, compose
from omegaconf import OmegaConf

from cvsweep.config import objectives, schema

FILES = sorted(path for path in CONF_DIR.rglob("*.yaml"))


def _package(path) -> str:
    """Where the file's keys land: its ``# @package`` line, else its group."""
    for line in path.read_text().splitlines():
        if line.startswith("# @package "):
            package = line.removeprefix("# @package ").strip()
            return "" if package == "_global_" else f"{package}."
    group = path.parent.relative_to(CONF_DIR).as_posix()
    return "" if group == "." else f"{group}."


def _leaves(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _written(path) -> tuple[dict, list]:
    data = yaml.safe_load(path.read_text()) or {}
    return data, data.pop("defaults", [])


def _same(a, b) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _schema_default(cfg, key: str):
    """The schema's default at a key of the composed config, or a sentinel where the parent
    node has no dataclass schema."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    node_type = OmegaConf.get_type(parent) if OmegaConf.is_dict(parent) else None
    if not dataclasses.is_dataclass(node_type) or leaf not in {f.name for f in dataclasses.fields(node_type)}:
        return NotImplemented
    default = OmegaConf.structured(node_type)
    node = default._get_node(leaf)
    if node._is_missing():
        return "???"
    return OmegaConf.to_container(default, enum_to_str=True)[leaf]


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(CONF_DIR).as_posix() for p in FILES])
def test_no_yaml_value_restates_the_default_it_overrides(path):
    group = path.parent.relative_to(CONF_DIR).as_posix()
    option = f"+{group}={path.stem}" if group == "experiment" else f"{group}={path.stem}"
    cfg = compose() if group == "." else compose(option)
    data, defaults = _written(path)
    # A preset that extends another option of its group must not restate that one either.
    extended = {}
    for entry in defaults:
        if group != "." and isinstance(entry, str) and not entry.startswith("/") and entry != "_self_":
            extended.update(_leaves(_written(path.parent / f"{entry}.yaml")[0]))
    restated = []
    for key, value in _leaves(data):
        full = f"{_package(path)}{key}"
        if full.startswith("hydra.") and not full.startswith("hydra.sweeper."):
            continue  # Hydra's own settings (run dirs, launcher): not cvsweep's schema
        if key in extended and _same(value, extended[key]):
            restated.append(f"{full}={value!r} (as the preset it extends)")
        default = _schema_default(cfg, full)
        if default is not NotImplemented and _same(value, default):
            restated.append(f"{full}={value!r} (the schema's default)")
    assert not restated, f"{path.relative_to(REPO)} restates: {restated}"


def _schema_classes() -> dict[str, set[str]]:
    classes = {}
    for module in (schema,):
        for name, obj in vars(module).items():
            if dataclasses.is_dataclass(obj) and inspect.getmodule(obj) is module:
                classes[name] = {f.name for f in dataclasses.fields(obj)}
    return classes


def _string_literals(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if strings:
                yield node.lineno, strings


def test_no_module_keeps_a_hand_written_list_of_a_schemas_fields():
    classes = _schema_classes()
    assert {"TrainingConfig", "CnnModelConfig", "HealthWeights"} <= set(classes)
    found = []
    sources = sorted({*(REPO / "cvsweep").rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py"), *(REPO / "remote").glob("*.py")})
    assert len(sources) > 40, "the scan must reach every subpackage"
    for path in sources:
        for line, strings in _string_literals(ast.parse(path.read_text())):
            for name, names in classes.items():
                if len(strings & names) >= 3:
                    found.append(f"{path.relative_to(REPO)}:{line}: {sorted(strings & names)} are fields of {name}")
    assert not found, "derive these from the dataclass (dataclasses.fields):\n" + "\n".join(found)


def test_the_scan_finds_a_hand_written_list():
    tree = ast.parse('SCORES = ("neuron_utilisation", "gradient_health", "overfitting")')
    (_, strings), = _string_literals(tree)
    assert len(strings & _schema_classes()["HealthWeights"]) == 3


def test_objectives_and_directions_come_from_one_table():
    assert [o.value for o in schema.Objective] == list(schema.OBJECTIVES)
    cfg = OmegaConf.create({"objective": schema.Objective.val_loss,
                            "secondary_objectives": [schema.Objective.val_accuracy, schema.Objective.latency_ms]})
    assert objectives.directions_of(cfg) == ["minimize", "maximize", "minimize"]
    assert {spec.direction for spec in schema.OBJECTIVES.values()} == {"maximize", "minimize"}
