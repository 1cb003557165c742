"""Ctrl-C and SIGTERM during a sweep: remote jobs in flight are cancelled at RunPod (the
emulator records the cancellations), their trials fail with reason "interrupted", the
summary of what finished is written, and the exit status is 130 / 143. A second Ctrl-C exits
at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, SENTINEL_API_KEY, TINY_OVERRIDES, read_json
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def start_sweep(tmp_path: Path, *args: str) -> subprocess.Popen:
    """A sweep in a session of its own, so a signal can go to its whole process group as a
    terminal's Ctrl-C does."""
    return subprocess.Popen(
        [sys.executable, "-m", "cvsweep", "-m", *TINY_OVERRIDES, f"output_root={tmp_path}", "plots=summary", *args],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )


def read_until(proc: subprocess.Popen, text: str, count: int = 1) -> list[str]:
    lines, seen = [], 0
    for line in proc.stdout:
        lines.append(line)
        seen += text in line
        if seen == count:
            return lines
    raise AssertionError(f"the sweep ended before {count} x {text!r}: exit {proc.wait()}\n{''.join(lines)[-3000:]}")


def remote_args(n_trials: int) -> list[str]:
    return ["executor=runpod", "executor.max_in_flight=2", "executor.poll_interval_s=0.2",
            f"hydra.sweeper.n_trials={n_trials}"]


def the_study(root: Path) -> optuna.Study:
    (name,) = optuna.get_all_study_names(f"sqlite:///{root}/optuna.db")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/optuna.db")


def purge(emulator) -> None:
    import requests

    requests.post(f"{emulator.base_url}/local-endpoint/purge-queue", timeout=10,
                  headers={"Authorization": f"Bearer {SENTINEL_API_KEY}"})


@pytest.mark.parametrize("signum, to_group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_a_signal_cancels_the_remote_jobs_in_flight(runpod_env, tmp_path, signum, to_group, code):
    runpod_env.admin("faults", {"queue_delay_s": 120})  # both jobs wait: paid time that must stop
    try:
        proc = start_sweep(tmp_path, *remote_args(4))
        read_until(proc, "submitted", 2)
        sent = [job for job, status in runpod_env.admin("state")["jobs"].items() if status["status"] == "IN_QUEUE"]
        os.killpg(proc.pid, signum) if to_group else proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
    finally:
        purge(runpod_env)
    assert proc.returncode == code, out[-3000:]
    # Every job that was in flight was cancelled through RunPod's cancel route.
    cancelled = runpod_env.admin("state")["cancelled"]
    assert len(sent) == 2 and set(sent) <= set(cancelled), (sent, cancelled)
    # Their trials failed as interrupted; their parameters are asked again by the next run.
    trials = the_study(tmp_path).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and not [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.user_attrs["cvsweep.result"]["reason"] == f"interrupted by {signal.Signals(signum).name}"
               for t in failed)
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted(t.number for t in failed)
    # The summary of the run was written; each trial's result.json names the cancelled job.
    summary = read_json(next(tmp_path.glob("sweeps/*/summary.json")))
    assert summary["n_failed"] == 2 and summary["n_completed"] == 0
    reasons = [t["reason"] for t in summary["trials"]]
    assert all(r.startswith("interrupted: the sweep was stopped; job ") and r.endswith(" cancelled") for r in reasons)
    assert "the sweep was interrupted" in out and SENTINEL_API_KEY not in out


def test_a_second_ctrl_c_exits_at_once(runpod_env, tmp_path):
    runpod_env.admin("faults", {"queue_delay_s": 120})
    try:
        proc = start_sweep(tmp_path, *remote_args(2), "executor.backoff_s=20", "executor.backoff_max_s=20")
        read_until(proc, "submitted", 2)
        runpod_env.admin("faults", {"http_errors": 1000})  # the cancel requests now back off for long
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(2)
        assert proc.poll() is None  # still cancelling
        second = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - second
    finally:
        runpod_env.reset_faults()
        purge(runpod_env)
    assert proc.returncode == 130 and "SIGINT again: exiting now" in out, out[-3000:]
    assert took < 3


def test_sigterm_stops_a_local_trial_in_training(tmp_path):
    proc = start_sweep(tmp_path, "hydra.sweeper.n_trials=3", "training.epochs=200", "training.early_stopping_patience=0")
    read_until(proc, "epoch 2/200")
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert "epoch 199/200" not in out and time.monotonic() - stopped < 60
    (trial,) = the_study(tmp_path).get_trials(states=(TrialState.FAIL,))
    assert trial.user_attrs["cvsweep.result"]["reason"] == "interrupted by SIGTERM"
    summary = read_json(next(tmp_path.glob("sweeps/*/summary.json")))
    assert (summary["n_completed"], summary["n_failed"]) == (0, 1)
