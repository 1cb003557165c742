"""Docstrings are reference and comments are one-line whys: what the code says about itself
stays true. History belongs in commit messages, the figures behind a design choice in
benchmarks/README.md or benchmarks/results/; a file a docstring or comment names must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

SOURCES = sorted(p for top in ("cvsweep", "hydra_plugins", "remote") for p in (REPO / top).rglob("*.py"))
# The configs: `cvsweep --help` is made of them (each option's first comment line, the help page).
CONFIGS = sorted((REPO / "conf").rglob("*.yaml"))
TESTS = sorted(p for p in (REPO / "tests").rglob("*.py") if p.name != Path(__file__).name)
NAMED_PATH = re.compile(r"\b((?:cvsweep|remote|hydra_plugins|benchmarks|tests|conf)/[\w./-]+\.(?:py|yaml|json|sh|md))")
EARLIER_TOOL = re.compile(r"earlier tool", re.IGNORECASE)
HISTORY = re.compile(r"earlier tool|\bissue \d+|\b20\d\d-[01]\d-[0-3]\d\b", re.IGNORECASE)
# A figure taken on some machine: its CPU's name, "measured: ...", "(about 0.09 s here)".
MEASUREMENT = re.compile(
    r"\bEPYC\b|\bXeon\b|\bmeasured:|\bmeasured \d|\d(?:\.\d+)? ?(?:ms|s|MB|GB) here\b|\(about [\d.]+ ?(?:ms|s|MB|GB)\b")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _lines_matching(path: Path, pattern: re.Pattern) -> list[str]:
    return [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_every_file_the_code_names_exists(path):
    missing = sorted({p for p in NAMED_PATH.findall(path.read_text()) if not (REPO / p).exists()})
    assert not missing, f"{_rel(path)} names files that do not exist: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_the_code_carries_no_history(path):
    lines = _lines_matching(path, HISTORY)
    assert not lines, f"{_rel(path)}: history (dates, issue numbers, earlier tools) belongs in commit messages:\n" + \
        "\n".join(lines)


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_the_configs_and_the_help_carry_no_history(path):
    lines = _lines_matching(path, HISTORY)
    assert not lines, f"{_rel(path)}: say what the option is, not what it was (the help shows these lines):\n" + \
        "\n".join(lines)


def test_no_test_names_an_earlier_tool():
    """A new reader cannot know what "the earlier tool" was: a test says what it checks."""
    lines = [f"{_rel(path)}:{line}" for path in TESTS for line in _lines_matching(path, EARLIER_TOOL)]
    assert not lines, "say what the option or behaviour is:\n" + "\n".join(lines)


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_the_code_carries_no_measurements(path):
    lines = _lines_matching(path, MEASUREMENT)
    assert not lines, (f"{_rel(path)}: say the reason in words; the figures go to benchmarks/README.md "
                       "('Measurements behind design choices'):\n" + "\n".join(lines))


def test_the_patterns_see_what_they_are_for():
    assert HISTORY.search("the earlier tool's max_parameters") and EARLIER_TOOL.search("as the Earlier Tool did")
    assert HISTORY.search("fixed in issue 14") and HISTORY.search("(2026-11-29 15:10)")
    assert MEASUREMENT.search("2-core AMD EPYC") and MEASUREMENT.search("(about 0.09 s here)")
    assert MEASUREMENT.search("measured: 100 failures in a row")
    # Facts of a contract or of arithmetic stay: a documented limit, a size computed from a shape.
    assert not MEASUREMENT.search("RunPod refuses a job's input over 10 MB (/run)")
    assert not MEASUREMENT.search("8 images at 4096x4096 RGB are 403 MB")
    assert not MEASUREMENT.search("inference time per image (ms), measured on a batch of validation images")
