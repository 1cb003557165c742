"""README.md is a guide: short, with the two quickstart commands, and no development log (issue
numbers, dates, machine load figures); the guides and the history live in docs/, CHANGELOG.md
and benchmarks/README.md. Every file it links to exists."""

from __future__ import annotations

import re

from conftest import REPO

README = REPO / "README.md"
MAX_LINES = 260
ISSUE = re.compile(r"\bissues? \d+|(?<![\w/&])#\d+\b", re.IGNORECASE)
DATE = re.compile(r"\b20\d\d-[01]\d(?:-[0-3]\d)?\b")
LOAD = re.compile(r"\bload(?: average)?(?: (?:of|about|below|above))* ~?\d|\bload average\b", re.IGNORECASE)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _text() -> str:
    return README.read_text()


def test_the_readme_is_a_short_guide():
    lines = _text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; keep it under {MAX_LINES} (move detail to docs/)"


def test_the_readme_holds_the_two_quickstart_commands():
    text = _text()
    assert "pip install uv==0.13.8 && uv run cvsweep -m" in text
    assert "pip install uv==0.13.8 && uv run pytest" in text


def test_the_readme_carries_no_history_or_machine_figures():
    found = [f"{n}: {line.strip()}" for n, line in enumerate(_text().splitlines(), 1)
             if ISSUE.search(line) or DATE.search(line) or LOAD.search(line)]
    assert not found, ("README.md: issue numbers, dates and load figures belong in CHANGELOG.md and "
                       "benchmarks/README.md:\n" + "\n".join(found))


def test_the_patterns_see_what_they_are_for():
    assert ISSUE.search("before issue 18 added") and ISSUE.search("fixed in #12")
    assert DATE.search("(2026-11-29)") and DATE.search("latest figures from 2026-11")
    assert LOAD.search("at a load of about 8") and LOAD.search("load average about 11") and LOAD.search("load 2")
    assert not ISSUE.search("a [link](docs/design.md#why-the-sweeper-is-forked)")
    assert not LOAD.search("keras.models.load_model(path)") and not LOAD.search("downloads on first use")


def test_every_file_the_readme_links_exists():
    missing = sorted({target for target in LINK.findall(_text())
                      if "://" not in target and not (REPO / target).exists()})
    assert not missing, f"README.md links to files that do not exist: {missing}"
