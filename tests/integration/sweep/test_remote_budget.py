"""hydra.sweeper.budget_usd end to end against the emulated RunPod endpoint: the client prices
each job's billed time with executor.price_per_hour, the sweep stops starting trials once the
study's spend would pass the budget (one line, exit 0), and a re-run of the same command sees
the study's spend and starts nothing. The loop's decisions themselves are unit-tested with a
fake launcher (tests/unit/sweep/test_budget.py)."""

from __future__ import annotations

import pytest
from conftest import TINY_OVERRIDES, read_json, run_cli

pytestmark = pytest.mark.slow  # two sweep processes, one remote trial


def test_a_spent_budget_ends_the_sweep_with_exit_0_and_a_rerun_starts_nothing(runpod_env, tmp_path):
    # Any billed second passes a budget this small: the first trial starts (nothing to
    # estimate from yet), then nothing more. One in flight: each trial that started before
    # the first was priced would be spent too.
    command = ["-m", "executor=runpod", "executor.price_per_hour=3.6", "executor.max_in_flight=1",
               "executor.poll_interval_s=0.2", "hydra.sweeper.n_trials=5", "hydra.sweeper.budget_usd=0.000001",
               "plots=none", *TINY_OVERRIDES, f"output_root={tmp_path}"]
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "hydra.sweeper.budget_usd=1e-06) ended it" in first.stderr and "1 of n_trials=5 finished" in first.stderr
    summary = read_json(next((tmp_path / "sweeps").iterdir()) / "summary.json")
    assert summary["n_trials"] == 1 and summary["cost_usd"] > 0
    assert summary["study"]["cost_usd"] == summary["cost_usd"] and summary["trials"][0]["billed_s"] > 0
    assert "Cost: this run's trials $" in first.stdout

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "budget_usd=1e-06) ended it" in again.stderr and "This run started no trial" in again.stdout
    assert len(list((tmp_path / "sweeps").glob("*/0/result.json"))) == 1  # the first run's trial only
