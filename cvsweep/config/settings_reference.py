"""The settings reference (docs/reference/settings.md), written from the schema itself: every
key's type, default, allowed range or values, and the comment beside its field in the source.
Nothing here lists a setting: the dataclasses, their field metadata and the enums say it all."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any, Iterable, Optional, Sequence

from omegaconf import MISSING

from cvsweep.config import schema
from cvsweep.config.datasets import Kind, names_of
from cvsweep.config.objective_table import OBJECTIVES


@dataclass(frozen=True)
class Section:
    """One table of the reference: the settings one dataclass declares, under a key prefix.

    Args:
        title: The section's heading.
        prefix: The dotted key the fields sit under (``training.``, or empty for the top level).
        schema: The dataclass.
        intro: A line before the table (which options pick this schema).
        own_only: Only the fields the class itself declares, not those it inherits.
        skip: Field names left out (set elsewhere, or internal to Hydra).
        notes: What a field is, by name, for a class made at run time (no source to read).
    """

    title: str
    prefix: str
    schema: type
    intro: str = ""
    own_only: bool = False
    skip: tuple[str, ...] = ()
    notes: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)


def schema_sections() -> list[Section]:
    """The sections of cvsweep's own schema (cvsweep/config/schema.py), in the config's order.

    Returns:
        The top level, each dataset kind, each model architecture and its parts, sampling,
        training, health and each executor.
    """
    kinds = {schema.DATASET_SCHEMAS[kind]: kind for kind in Kind}
    sections = [Section("Top level", "", schema.Config, own_only=True, skip=("executor",),
                        notes={"objective": "What the sweep optimises (see Objectives below)."})]
    sections.append(Section("dataset: every dataset", "dataset.", schema.DatasetConfig))
    for dataset_schema, kind in kinds.items():
        parent = dataset_schema.__mro__[1].__name__
        sections.append(Section(
            f"dataset: {kind.value} ({dataset_schema.__name__})", "dataset.", dataset_schema, own_only=True,
            intro=f"`dataset=` {_code_list(names_of(kind))}; also the settings of `{parent}`."))
    sections.append(Section("model: every model", "model.", schema.ModelConfig))
    for architecture, model_schema in schema.MODEL_SCHEMAS.items():
        sections.append(Section(f"model: {architecture.value} ({model_schema.__name__})", "model.", model_schema,
                                own_only=True, intro=f"`model.architecture={architecture.value}`; also the "
                                                     "settings of every model."))
    sections.append(Section("model.augmentation (CNN)", "model.augmentation.", schema.AugmentationConfig))
    sections += [Section("sampling", "sampling.", schema.SamplingConfig),
                 Section("training", "training.", schema.TrainingConfig),
                 Section("health", "health.", schema.HealthConfig),
                 Section("health.weights", "health.weights.", schema.HealthWeights)]
    for name, executor_schema in schema.EXECUTOR_SCHEMAS.items():
        sections.append(Section(f"executor: {name} ({executor_schema.__name__})", "executor.", executor_schema,
                                intro=f"`executor={name}`."))
    sections.append(Section("executor.artifact_store (runpod)", "executor.artifact_store.",
                            schema.ArtifactStoreConfig))
    return sections


def settings_markdown(sections: Sequence[Section], header: str = "") -> str:
    """The reference page: ``header``, then a table per section, then the objectives.

    Args:
        sections: The tables, in order (``schema_sections()`` and any more).
        header: Markdown put before the first table.

    Returns:
        The page's Markdown, ending in one newline.
    """
    parts = [header.rstrip("\n")] if header else []
    for section in sections:
        parts.append(_section_markdown(section))
    parts.append(_objectives_markdown())
    return "\n\n".join(parts) + "\n"


def _section_markdown(section: Section) -> str:
    doc = inspect.getdoc(section.schema) or ""
    if doc.startswith(section.schema.__name__ + "("):  # the signature dataclasses write, not a docstring
        doc = ""
    lines = [f"## {section.title}", ""]
    if doc:
        lines += [" ".join(doc.split()), ""]
    if section.intro:
        lines += [section.intro, ""]
    lines += ["| key | type | default | allowed | what |", "| --- | --- | --- | --- | --- |"]
    comments = {**field_comments(section.schema), **section.notes}
    hints = typing.get_type_hints(section.schema)
    own = set(vars(section.schema).get("__annotations__", {}))
    for f in fields(section.schema):
        if f.name in section.skip or f.name.startswith("_") or (section.own_only and f.name not in own):
            continue
        kind = hints.get(f.name, Any)
        lines.append("| " + " | ".join(_cell(text) for text in (
            f"`{section.prefix}{f.name}`", _type_text(kind, f, section.prefix), _default_text(f),
            _allowed_text(kind, f.metadata), comments.get(f.name) or _enum_doc(kind))) + " |")
    return "\n".join(lines)


def _objectives_markdown() -> str:
    lines = ["## Objectives", "",
             "The values of `objective` and `secondary_objectives` (the objectives table, "
             "cvsweep/config/objective_table.py). An objective with a value per epoch can be pruned on.", "",
             "| objective | direction | value | per epoch |", "| --- | --- | --- | --- |"]
    for name, spec in OBJECTIVES.items():
        per_epoch = f"`{spec.per_epoch}`" if spec.per_epoch else "none"
        lines.append(f"| `{name}` | {spec.direction} | {_cell(spec.description)} | {per_epoch} |")
    return "\n".join(lines)


def field_comments(cls: type) -> dict[str, str]:
    """The comment beside each field of a dataclass in its source: the comment lines right above
    the field and any comment at the end of its lines, joined into one line.

    Args:
        cls: The dataclass (whose own fields are read; inherited ones are not).

    Returns:
        The comment by field name, for the fields that have one.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # made at run time: no source to read
        return {}
    comment_at: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comment_at[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                tokenize.ENDMARKER):
            code_lines.update(range(token.start[0], token.end[0] + 1))
    found = {}
    body = ast.parse(source).body[0].body
    for node in body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if not isinstance(target, ast.Name):
            continue
        above, line = [], node.lineno - 1
        while line in comment_at and line not in code_lines:
            above.insert(0, comment_at[line])
            line -= 1
        beside = [comment_at[n] for n in range(node.lineno, node.end_lineno + 1) if n in comment_at]
        text = " ".join(above + beside).strip()
        if text:
            found[target.id] = text
    return found


def _type_text(kind: Any, f, prefix: str) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return f"{_type_text(inner, f, prefix)} or null"
    if origin in (list, typing.List):
        return f"list of {_type_text(args[0], f, prefix)}" if args else "list"
    if inspect.isclass(kind) and issubclass(kind, Enum):
        return "choice"
    if is_dataclass(kind) or (f.default_factory is not NO_DEFAULT and is_dataclass(f.default_factory())):
        return "section"
    if kind is Any:
        return "section (by option)" if f.name in schema.PICKED_SCHEMAS else "any"
    return getattr(kind, "__name__", str(kind))


def _default_text(f) -> str:
    if f.default is not NO_DEFAULT:
        value = f.default
    elif f.default_factory is not NO_DEFAULT:
        value = f.default_factory()
        if is_dataclass(value):
            return "(its section)"
    else:
        return "required"
    if value is MISSING:
        return "required"
    return f"`{_yaml(value)}`"


def _yaml(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, int):
        return f"{value:_}".replace("_", ",") if abs(value) >= 10_000 else str(value)
    return str(value)


def _allowed_text(kind: Any, metadata: typing.Mapping) -> str:
    notes = []
    enum = _enum_in(kind)
    if enum is not None:
        meanings = field_comments(enum)
        notes.append(", ".join(f"`{m.value}` ({meanings[m.name]})" if m.name in meanings else f"`{m.value}`"
                               for m in enum))
    if "bounds" in metadata:
        notes.append(_range_text(*metadata["bounds"]))
    if "operator_only" in metadata:
        notes.append(f"operator only ({metadata['operator_only']})")
    if metadata.get("within_data_roots"):
        notes.append("service requests: inside a `--data-root` folder only")
    if metadata.get("client_cap"):
        notes.append("service requests may lower it, not raise it")
    if "from_env" in metadata:
        notes.append(f"`{metadata['from_env']}` replaces the default")
    return "; ".join(notes)


def _enum_in(kind: Any) -> Optional[type]:
    if inspect.isclass(kind) and issubclass(kind, Enum):
        return kind
    for arg in typing.get_args(kind):
        found = _enum_in(arg)
        if found is not None:
            return found
    return None


def _enum_doc(kind: Any) -> str:
    """The docstring of the enum a field chooses from, when it has one of its own."""
    enum = _enum_in(kind)
    doc = (inspect.getdoc(enum) or "") if enum is not None and enum.__doc__ else ""
    return "" if doc.startswith("An enumeration") else " ".join(doc.split())


def _range_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"{'(' if low_open else '['}{_yaml(low)}, {_yaml(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_yaml(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_yaml(high)}"
    return "any"


def _code_list(values: Iterable[Any]) -> str:
    return ", ".join(f"`{value}`" for value in values)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
