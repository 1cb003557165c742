"""The settings reference is written from the schema: each key with its type, default, range and
the comment beside it; the committed page (docs/reference/settings.md) is what the generator
writes now."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from conftest import REPO

from cvsweep.config import schema
from cvsweep.config.settings_reference import Section, field_comments, schema_sections, settings_markdown


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class _Example:
    """An example section."""

    # The first line of a comment,
    # and its second line.
    width: int = field(default=3, metadata=schema.bounds(1, 8))
    ratio: float = field(default=0.5, metadata=schema.bounds(0, 1, low_open=True))  # beside it
    flip: schema.Flip = schema.Flip.none
    uncommented: bool = False


def test_comments_above_and_beside_a_field_are_its_description():
    assert field_comments(_Example) == {"width": "The first line of a comment, and its second line.",
                                        "ratio": "beside it"}


def test_a_row_holds_type_default_range_and_choices():
    page = settings_markdown([Section("example", "example.", _Example)])
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| `example.")}
    assert rows["`example.width`"] == ("| `example.width` | int | `3` | [1, 8] | "
                                       "The first line of a comment, and its second line. |")
    assert "| (0, 1] | beside it |" in rows["`example.ratio`"]
    assert "`none`, `horizontal`, `vertical`, `horizontal_and_vertical`" in rows["`example.flip`"]
    assert rows["`example.uncommented`"] == "| `example.uncommented` | bool | `false` |  |  |"


def test_every_schema_field_has_a_row():
    page = settings_markdown(schema_sections())
    for key in ("training.epochs", "training.max_params", "dataset.image_size", "model.lstm_units",
                "model.augmentation.zoom", "health.weights.overfitting", "executor.max_in_flight",
                "executor.artifact_store.url", "output_root", "objective"):
        assert f"| `{key}` |" in page, key
    assert "operator only (every file of a run is written below it)" in page


def test_the_committed_settings_page_is_current():
    generator = _generator()
    committed = (REPO / "docs" / "reference" / "settings.md").read_text()
    assert committed == generator.settings_page(), (
        f"docs/reference/settings.md is stale: run `{generator.COMMAND}` and commit the page")
