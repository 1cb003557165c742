"""Hostile command lines through the real command, against an output folder that already holds a
finished real sweep: each fails fast with a message naming the problem, starts no trial, and leaves
every earlier file byte for byte as it was. One of each way out (Hydra's composition, the value
checks, the data checks, a study the real sweep stored); every input of CLI_INPUTS goes through
the same composition and checks in one process in tests/unit/sweep/test_hostile_command_lines.py."""

from __future__ import annotations

import os

import pytest
from conftest import TINY_OVERRIDES, run_cli
from test_hostile_command_lines import CLI_INPUTS, corrupt_datasets, hostile_args, snapshot

# A real sweep, then a fresh interpreter per command line: the full suite's lane.
pytestmark = pytest.mark.slow

THROUGH_THE_COMMAND = ["unknown-key", "out-of-range", "dataset-truncated", "study-of-another-experiment"]


@pytest.fixture(scope="module")
def earlier_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    proc = run_cli("-m", *TINY_OVERRIDES, "training.epochs=1", "hydra.sweeper.n_trials=1", "plots=summary",
                   f"output_root={root}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = tmp_path_factory.mktemp("data")
    corrupt_datasets(data)
    return root, data, snapshot(root)


@pytest.mark.parametrize("case, args, message", [c for c in CLI_INPUTS if c[0] in THROUGH_THE_COMMAND],
                         ids=THROUGH_THE_COMMAND)
def test_hostile_command_lines_fail_fast_and_damage_nothing(earlier_sweep, case, args, message, monkeypatch):
    root, data, before = earlier_sweep
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    proc = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=1", *hostile_args(case, args, root, data),
                   timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0, said[-2000:]
    assert message in said, said[-2000:]
    assert "Traceback" not in said  # a message, not a crash
    assert "epoch 1/" not in said  # no trial trained
    assert snapshot(root) == before  # nothing earlier lost or changed, and nothing new written
