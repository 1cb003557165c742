"""No finished remote result is lost: a status outage longer than the submit's retry budget is
waited out, a failed trial's result.json records its job id, and a job whose client died is
collected by the next trial of the same config instead of trained again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
from conftest import REPO, TINY_OVERRIDES, read_json
from test_remote import _executor, _run_config

# Real sweeps or the RunPod emulator's workers (each with its training process): the full
# suite's lane, not `pytest -m "not slow"`.
pytestmark = pytest.mark.slow


def _jobs(emulator) -> dict:
    return emulator.admin("state")["jobs"]


def _when(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_status_outage_longer_than_the_retries_is_waited_out(runpod_env):
    """Reproduction: the polls used to share the submit's retry budget (3 retries here), so an
    outage of a few seconds failed a trial whose job went on to complete."""
    runpod_env.admin("faults", {"queue_delay_s": 2})
    before = set(_jobs(runpod_env))

    def outage_once_submitted():
        _when(lambda: set(_jobs(runpod_env)) - before)
        runpod_env.admin("faults", {"http_status": 503, "http_errors": 12})  # 12 polls, ~5 s

    threading.Thread(target=outage_once_submitted, daemon=True).start()
    result = _executor(runpod_env.base_url, retries=3).run(_run_config())
    assert result["status"] == "completed", result.get("reason")
    assert runpod_env.admin("state")["faults"]["http_errors"] == 0  # the outage happened


def test_a_failed_remote_trial_records_its_job_id(runpod_env):
    runpod_env.admin("faults", {"fail_jobs": 1})
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed"
    assert result["remote"]["job_id"] in _jobs(runpod_env) and result["remote"]["endpoint_id"] == "local-endpoint"


def test_a_job_whose_client_died_is_collected_not_trained_again(runpod_env, tmp_path):
    runpod_env.admin("faults", {"queue_delay_s": 4})
    args = [sys.executable, "-m", "cvsweep", "-m", "executor=runpod", "executor.max_in_flight=1",
            "executor.poll_interval_s=0.2", "hydra.sweeper.n_trials=1", *TINY_OVERRIDES, "plots=none",
            f"output_root={tmp_path}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    before = set(_jobs(runpod_env))
    sweep = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _when(lambda: set(_jobs(runpod_env)) - before)
    (job_id,) = set(_jobs(runpod_env)) - before
    sweep.send_signal(signal.SIGKILL)  # the client is gone; its job runs on
    sweep.wait()
    _when(lambda: _jobs(runpod_env)[job_id]["status"] == "COMPLETED")

    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(_jobs(runpod_env)) - before == {job_id}  # no second job: nothing trained twice
    assert f"remote job {job_id} of this config, submitted earlier, is COMPLETED: collecting it" in again.stdout + again.stderr
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]  # interrupted, then its retry
    collected = read_json(trials[1].user_attrs["cvsweep.result"]["path"])
    assert collected["remote"]["job_id"] == job_id and collected["status"] == "completed"


def _left_behind(emulator, run_config: dict) -> str:
    """A job of ``run_config`` sent to the emulator and noted in the ledger, as a client killed
    right after its submission leaves it."""
    import requests

    from cvsweep.config.fingerprint import fingerprint
    from cvsweep.execution import remote_jobs
    from cvsweep.execution.payload import make_input

    body = {"input": make_input(run_config), "policy": {"executionTimeout": 3_600_000, "ttl": 86_400_000}}
    answer = requests.post(f"{emulator.base_url}/local-endpoint/run", json=body, timeout=10,
                           headers={"Authorization": f"Bearer {os.environ['RUNPOD_API_KEY']}"})
    job_id = answer.json()["id"]
    remote_jobs.remember("local-endpoint", fingerprint(run_config), job_id, time.time(), 86_400.0, 3_600.0)
    return job_id


def test_a_job_left_behind_is_collected_within_runpods_retention(runpod_env, caplog):
    runpod_env.settings(time_scale=0.01)  # RunPod's 30 minutes of retention: 18 s here
    job_id = _left_behind(runpod_env, _run_config())
    _when(lambda: _jobs(runpod_env)[job_id]["status"] == "COMPLETED")
    before = set(_jobs(runpod_env))
    with caplog.at_level("INFO", logger="cvsweep.runpod"):
        result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "completed" and result["remote"]["job_id"] == job_id
    # No second job: nothing trained or paid twice (an earlier test's may expire meanwhile).
    assert set(_jobs(runpod_env)) <= before
    assert f"remote job {job_id} of this config, submitted earlier, is COMPLETED: collecting it" in caplog.text


def test_a_job_left_behind_past_runpods_retention_is_said_expired_and_trained_again(runpod_env, caplog):
    # Two trainings (the job left behind, then its retrain): the longest of these tests.
    runpod_env.settings(time_scale=0.001)  # RunPod's 30 minutes of retention: 1.8 s here
    job_id = _left_behind(runpod_env, _run_config())
    _when(lambda: job_id in runpod_env.admin("state")["deleted"])  # completed, then kept 30 RunPod minutes
    with caplog.at_level("INFO", logger="cvsweep.runpod"):
        result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "completed" and result["remote"]["job_id"] != job_id
    said = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
    assert said == [f"remote job {job_id} of this config expired at RunPod (RunPod keeps a job's result 30 min after "
                    "it ends, then deletes it); the trial trains again"]


def test_a_job_whose_ttl_runs_out_mid_run_fails_its_trial_naming_the_setting(runpod_env):
    # 300 RunPod seconds in the queue, then its TTL (660 s from submission) ends the run after
    # 360 s, before its execution timeout (600 s after the start) could.
    runpod_env.settings(time_scale=0.005)
    runpod_env.admin("faults", {"queue_delay_s": 1.5})
    slow = _run_config()
    slow["training"]["epochs"] = 200
    result = _executor(runpod_env.base_url, execution_timeout_s=600.0, ttl_s=660.0).run(slow)
    job_id = result["remote"]["job_id"]
    assert result["status"] == "failed"
    assert result["reason"] == (f"remote: job {job_id} was deleted at RunPod (HTTP 404) before it ended: its TTL ran "
                                "out (executor.ttl_s=660 s from submission covers queue, run and result, and RunPod "
                                "deletes the job when it runs out, even mid-run); raise executor.ttl_s")
    assert "epochs_trained" in result["remote"] and result["remote"]["execution_ms"] is not None  # its GPU time
    runpod_env.wait_for_workers()  # the worker was stopped and takes jobs again


def test_a_killed_sweeps_running_job_is_collected_and_pruned_as_in_progress_would_be(runpod_env, caplog):
    """RUNNING (job-states.mdx) is running: the re-run collects the job (no second /run) and
    its pruner is asked at each epoch the worker reports, so the job is cancelled mid-run."""
    runpod_env.admin("faults", {"running_state_jobs": 1})
    slow = _run_config()
    slow["training"]["epochs"] = 200
    job_id = _left_behind(runpod_env, slow)
    _when(lambda: _jobs(runpod_env)[job_id]["status"] == "RUNNING")
    before = set(_jobs(runpod_env))
    with caplog.at_level("INFO", logger="cvsweep.runpod"):
        result = _executor(runpod_env.base_url).run(slow, prune=lambda report: report["epoch"] >= 2)
    assert f"remote job {job_id} of this config, submitted earlier, is RUNNING: collecting it" in caplog.text
    assert set(_jobs(runpod_env)) == before  # no second job
    assert result["status"] == "pruned" and result["remote"]["job_id"] == job_id
    assert _jobs(runpod_env)[job_id]["status"] == "CANCELLED"
    assert result["remote"]["epochs_trained"] >= result["pruned"]["epoch"] == 2


def test_a_killed_sweeps_timed_out_job_is_retried_under_its_own_id(runpod_env, caplog):
    runpod_env.admin("faults", {"time_out_jobs": 1})
    job_id = _left_behind(runpod_env, _run_config())
    _when(lambda: _jobs(runpod_env)[job_id]["status"] == "TIMED_OUT")
    before = set(_jobs(runpod_env))
    with caplog.at_level("INFO", logger="cvsweep.runpod"):
        result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "completed" and result["remote"]["job_id"] == job_id
    assert set(_jobs(runpod_env)) <= before  # /retry, not a second /run
    assert f"remote job {job_id} of this config, submitted earlier, ended TIMED_OUT: re-queued with /retry" in caplog.text
