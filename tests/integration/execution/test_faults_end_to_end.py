"""Every fault of the fault table (docs/guides/remote.md) in one remote sweep through the emulator: each
trial records its fault, the sweep goes on to its end, no completed result is lost, and the
API key is in nothing the sweep wrote or printed, failure paths included."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
from conftest import SENTINEL_API_KEY, TINY_OVERRIDES, read_json, run_cli
from optuna.trial import TrialState

N_TRIALS = 14
# Remote faults, one job each in this order (the emulator fires them on successive jobs),
# and transient HTTP faults that must be retried away.
JOB_FAULTS = {"fail_jobs": 1, "time_out_jobs": 1, "cancel_jobs": 1, "kill_workers": 1,
              "malformed_results": 1, "wrong_fingerprints": 1}
TRANSIENT = {"http_errors": 3, "http_status": 503, "drop_connections": 2}
# What each fault leaves as the trial's reason (result.json and the summary's table).
REASONS = {
    "fail_jobs": "injected failure: the job failed before it ran",
    "time_out_jobs": "ended TIMED_OUT",
    "cancel_jobs": "ended CANCELLED",
    "kill_workers": "died while running the job",
    "malformed_results": "malformed result",
    "wrong_fingerprints": "fingerprint mismatch",
    "nan": "diverged: training loss became NaN or infinite",
    "budget": "time budget exceeded: training.time_budget_s=0.001",
}


def _once_a_job_is_sent(emulator, faults: dict) -> threading.Thread:
    """Inject ``faults`` as soon as the sweep's first job reaches the emulator: after the
    health check before the first trial, which would otherwise meet (and retry) them all."""
    def inject():
        deadline = time.monotonic() + 300
        while not emulator.admin("state")["jobs"] and time.monotonic() < deadline:
            time.sleep(0.05)
        emulator.admin("faults", faults)

    thread = threading.Thread(target=inject, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_every_fault_in_one_remote_sweep(runpod_env, tmp_path):
    # The first job waits 3 s in the queue, so the transient faults meet its status polls
    # (retried), not a submission (never sent twice: cvsweep/execution/http_retry.py).
    runpod_env.admin("faults", {**JOB_FAULTS, "kill_after_s": 0.3, "slow_jobs": 1, "slow_job_s": 3})
    runpod_env.settings(max_requeues=0)  # the killed worker's job ends TIMED_OUT, not run again
    injector = _once_a_job_is_sent(runpod_env, TRANSIENT)
    proc = run_cli(
        "-m", "executor=runpod", "executor.max_in_flight=1", "executor.poll_interval_s=0.1",
        "executor.retries=5", "executor.backoff_s=0.1", "executor.backoff_max_s=0.5",
        *TINY_OVERRIDES, f"hydra.sweeper.n_trials={N_TRIALS}", f"output_root={tmp_path}", "plots=summary",
        # The injected faults hit successive jobs: here a run of failures is the point.
        "hydra.sweeper.max_consecutive_failures=10",
        # Faults, not pruning (tests/integration/study/test_pruning.py): every trial that can, completes.
        "hydra/sweeper/pruner=none",
        # Seeded, so the same trials always get these: some diverge to NaN, some overrun.
        "dataset.pixel_scale=choice(16.0, 1e-30)", "training.time_budget_s=choice(600, 0.001)",
    )
    injector.join()
    assert proc.returncode == 0, proc.stderr[-3000:]  # the sweep was not aborted
    shown = proc.stdout + proc.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    # Failed trials use up nothing of n_trials; completed and infeasible ones do.
    assert summary["n_completed"] + summary["n_infeasible"] == N_TRIALS == summary["study"]["n_finished"]

    reasons = [t["reason"] or "" for t in summary["trials"] if t["status"] != "completed"]
    # Faults of the run fail their trials; a configuration that cannot train is infeasible.
    infeasible = [t["reason"] for t in summary["trials"] if t["status"] == "infeasible"]
    assert infeasible and all(r.startswith(("diverged", "time budget")) for r in infeasible)
    for fault, fragment in REASONS.items():
        assert any(fragment in r for r in reasons), (fault, reasons)
        assert fragment.split(":")[0] in shown  # the user sees it in the table / log
    assert sum(1 for r in reasons if any(f in r for f in REASONS.values())) == len(reasons)
    left = runpod_env.admin("state")["faults"]
    assert {name: left[name] for name in [*JOB_FAULTS, "http_errors", "drop_connections"]} == dict.fromkeys(
        [*JOB_FAULTS, "http_errors", "drop_connections"], 0)  # every fault fired

    # No completed result lost: the study's completed trials are exactly the completed
    # result.json files, with the same values.
    study = optuna.load_study(study_name=summary["study"]["name"], storage=f"sqlite:///{tmp_path}/optuna.db")
    complete = {t.number: t for t in study.trials if t.state == TrialState.COMPLETE}
    done = [t for t in summary["trials"] if t["status"] == "completed"]
    assert len(done) == len(complete) >= 2
    for trial in complete.values():
        result = read_json(trial.user_attrs["cvsweep.result"]["path"])
        assert result["status"] == "completed" and result["trial"]["objective_values"] == trial.values
    # Failures are recorded as FAIL with the same reason, for the dashboard and other processes.
    failed = [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.PRUNED)]
    assert len(failed) == len(reasons) and all(t.user_attrs["cvsweep.result"]["reason"] for t in failed)
    assert len([t for t in failed if t.state == TrialState.PRUNED]) == len(infeasible)

    # The API key: in no file, nothing printed.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SENTINEL_API_KEY.encode() not in path.read_bytes(), path
    assert SENTINEL_API_KEY not in shown
    runpod_env.wait_for_workers()  # the killed worker was replaced
