"""Hostile command lines through the real command, against an output folder that already holds a
finished real sweep: each fails fast with a message naming the problem, starts no trial, and leaves
every earlier file byte for byte as it was. One of each way out (Hydra's composition, the value
checks, the data checks, a study the real sweep stored); every input of CLI_INPUTS goes through
the same composition and checks in one process in tests/unit/sweep/test_hostile_command_lines.py."""

from __future__ import annotations

import shutil

import pytest
from conftest import TINY_OVERRIDES, run_cli
from test_hostile_command_lines import CLI_INPUTS, STUDY, corrupt_datasets, hostile_args, snapshot

# A real sweep, then a fresh interpreter per command line: the full suite's lane.
pytestmark = pytest.mark.slow

THROUGH_THE_COMMAND = ["unknown-key", "out-of-range", "dataset-truncated"]
# The earlier sweep is conftest's shared one, which trained 2 epochs (the unit test's study: 1).
ANOTHER_EXPERIMENT = ("study-of-another-experiment", [f"hydra.sweeper.study_name={STUDY}", "training.epochs=3"],
                      "that study is another experiment; what differs (stored -> now):\n    training.epochs: 2 -> 3")


@pytest.fixture(scope="module")
def earlier_sweep(tiny_sweep, tmp_path_factory):
    # A copy: other tests' readers of the shared study leave SQLite's -wal and -shm files beside
    # it, which come and go with their connections (the sweep that wrote it has closed its own).
    root = tmp_path_factory.mktemp("earlier") / "outputs"
    shutil.copytree(tiny_sweep[0], root, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm"))
    data = tmp_path_factory.mktemp("data")
    corrupt_datasets(data)
    return root, data, snapshot(root)


@pytest.mark.parametrize("case, args, message",
                         [c for c in CLI_INPUTS if c[0] in THROUGH_THE_COMMAND] + [ANOTHER_EXPERIMENT],
                         ids=THROUGH_THE_COMMAND + [ANOTHER_EXPERIMENT[0]])
def test_hostile_command_lines_fail_fast_and_damage_nothing(earlier_sweep, case, args, message, monkeypatch):
    root, data, before = earlier_sweep
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    proc = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=1", *hostile_args(case, args, root, data),
                   timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 2, said[-2000:]  # refused before any work
    assert message in said, said[-2000:]
    assert "Traceback" not in said  # a message, not a crash
    assert "epoch 1/" not in said  # no trial trained
    assert snapshot(root) == before  # nothing earlier lost or changed, and nothing new written
