"""executor=runpod against the local RunPod emulator: the real runpod client, real HTTP on
127.0.0.1, real worker processes running remote/handler.py."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SENTINEL_API_KEY, TINY_OVERRIDES, TINY_RUN, as_the_command_checks, read_json, run_cli
from omegaconf import OmegaConf

from cvsweep.config.schema import RunpodExecutorConfig, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution.executors import LocalExecutor
from cvsweep.execution.runpod import RunpodExecutor

# Real sweeps or the RunPod emulator's workers (each with its training process): the full
# suite's lane, not `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

PROXY_RUN = copy.deepcopy(TINY_RUN)
PROXY_RUN["sampling"] = {"strategy": "proxy", "fraction": 0.5}
# Settings that shape the model and its training beyond the defaults, so the worker provably
# honours them: a narrowing dense head (16, then 8 units) with its own activation and decaying
# dropout, and gradient clipping.
PROXY_RUN["model"].update(activation="swish", batch_norm=True, dense_layers=2, dense_units=16, dense_units_decay=0.5,
                          dropout_decay=0.5, dense_activation="tanh")
PROXY_RUN["training"].update(seed=11, optimizer="rmsprop", learning_rate=0.003, clipnorm=1.0)


def _run_config(data=TINY_RUN) -> dict:
    return run_config_of(load_run_config(copy.deepcopy(data)))


def _executor(base_url: str, **changes) -> RunpodExecutor:
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": "local-endpoint", "base_url": base_url, "poll_interval_s": 0.1,
                    "retries": 3, "backoff_s": 0.1, "backoff_max_s": 0.5, **changes})
    return RunpodExecutor(cfg)


@pytest.mark.parametrize("data", [TINY_RUN, PROXY_RUN], ids=["full", "proxy"])
def test_parity_local_and_remote_are_bit_identical(data, runpod_env):
    run_config = _run_config(data)
    local = LocalExecutor(None).run(copy.deepcopy(run_config))
    remote = _executor(runpod_env.base_url).run(copy.deepcopy(run_config))
    assert local["status"] == remote["status"] == "completed", remote.get("reason")
    assert local["fingerprint"] == remote["fingerprint"]
    assert local["config"] == remote["config"] and local["data"] == remote["data"]
    assert remote["metrics"]["history"] == local["metrics"]["history"]  # every epoch, exactly
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "epochs_run", "params"):
        assert remote["metrics"][key] == local["metrics"][key], key
    assert remote["executed_on"]["executor"] == "runpod" and remote["remote"]["worker_id"].startswith("worker-")
    assert remote["versions"] == local["versions"]
    # Diagnostics and health travel as data and match too (latency is a timing, not a result).
    assert remote["health"] == local["health"] and remote["diagnostics"] == local["diagnostics"]
    # The worker measures peak memory as train() does here (a measurement, like the timings).
    assert remote["metrics"]["peak_memory_source"] == local["metrics"]["peak_memory_source"]
    assert remote["metrics"]["peak_memory_mb"] > 0
    assert remote["remote"]["execution_ms"] > 0 and remote["remote"]["round_trip_s"] > 0


def test_failed_job_fails_the_trial_with_the_workers_error(runpod_env):
    runpod_env.admin("faults", {"fail_jobs": 1})
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed"
    assert result["reason"].startswith("remote: job ") and "ended FAILED: injected failure" in result["reason"]


@pytest.mark.parametrize("fault,state", [("time_out_jobs", "TIMED_OUT"), ("cancel_jobs", "CANCELLED")])
def test_timed_out_and_cancelled_jobs_fail_the_trial(fault, state, runpod_env):
    runpod_env.admin("faults", {fault: 1})
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed" and f"ended {state}" in result["reason"]


def test_execution_timeout_policy_is_sent_and_enforced(runpod_env):
    runpod_env.settings(time_scale=0.2)  # RunPod's least executionTimeout, 5 s, is 1 s here
    slow = _run_config(TINY_RUN | {"training": {**TINY_RUN["training"], "epochs": 200}})
    result = _executor(runpod_env.base_url, execution_timeout_s=5.0).run(slow)
    assert result["status"] == "failed" and "ended TIMED_OUT: ran longer than its executionTimeout (5s)" in result["reason"]


@pytest.mark.parametrize("status", [429, 503])
def test_http_errors_for_a_while_are_retried(status, runpod_env):
    runpod_env.admin("faults", {"http_status": status, "http_errors": 3})
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "completed", result["reason"]
    assert runpod_env.admin("state")["faults"]["http_errors"] == 0  # all three were met


def test_dropped_connections_are_retried(runpod_env):
    runpod_env.admin("faults", {"queue_delay_s": 2})  # the client polls the queued job meanwhile
    before = set(runpod_env.admin("state")["jobs"])

    def drop_once_submitted():
        while not set(runpod_env.admin("state")["jobs"]) - before:
            time.sleep(0.05)
        runpod_env.admin("faults", {"drop_connections": 2})

    threading.Thread(target=drop_once_submitted, daemon=True).start()
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "completed", result["reason"]
    assert runpod_env.admin("state")["faults"]["drop_connections"] == 0  # both were dropped, and retried


def test_a_submission_whose_connection_dropped_is_not_sent_again(runpod_env):
    """The request went out and no answer came: RunPod may have made the job (its API has no
    idempotency key), so a second submission could run it twice."""
    runpod_env.admin("faults", {"drop_connections": 1})
    before = set(runpod_env.admin("state")["jobs"])
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed"
    assert result["reason"].startswith("remote: submit request failed: ConnectionError")
    assert result["reason"].endswith("not sent again, as the job may exist")
    assert set(runpod_env.admin("state")["jobs"]) == before  # sent once (the emulator dropped it unmade)


def test_transient_faults_beyond_the_retries_fail_the_trial(runpod_env):
    runpod_env.admin("faults", {"http_status": 503, "http_errors": 10})
    result = _executor(runpod_env.base_url, retries=2).run(_run_config())
    assert result["status"] == "failed" and result["reason"] == "remote: submit request failed: HTTP 503: injected HTTP 503"


def test_unreachable_endpoint_fails_or_falls_back_to_local(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
    unreachable = "http://127.0.0.1:9/v2"  # the discard port: nothing listens there
    result = _executor(unreachable, retries=1).run(_run_config())
    assert result["status"] == "failed" and "ConnectionError" in result["reason"]
    fallback = _executor(unreachable, retries=1, fallback="local").run(_run_config())
    assert fallback["status"] == "completed"
    assert fallback["fallback"]["used"] is True and "ConnectionError" in fallback["fallback"]["remote_error"]
    assert fallback["executed_on"]["executor"] == "local"


def test_malformed_result_fails_the_trial(runpod_env):
    runpod_env.admin("faults", {"malformed_results": 1})
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed" and "returned a malformed result" in result["reason"]


def test_a_worker_cannot_say_its_trial_was_pruned(runpod_env):
    # Only the client's pruner prunes (it cancels the job); a worker's "pruned" is malformed.
    runpod_env.admin("faults", {"pruned_results": 1})
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed" and "returned a malformed result" in result["reason"]


def test_fingerprint_mismatch_fails_loudly_even_with_fallback(runpod_env):
    runpod_env.admin("faults", {"wrong_fingerprints": 1})
    result = _executor(runpod_env.base_url, fallback="local").run(_run_config())
    assert result["status"] == "failed" and "fingerprint mismatch" in result["reason"]
    assert "fallback" not in result


def test_worker_killed_mid_job_fails_the_trial_and_is_replaced(runpod_env):
    runpod_env.admin("faults", {"kill_workers": 1, "kill_after_s": 0.5})
    runpod_env.settings(max_requeues=0)  # no second run: the job ends TIMED_OUT at once
    slow = _run_config(TINY_RUN | {"training": {**TINY_RUN["training"], "epochs": 200}})
    result = _executor(runpod_env.base_url).run(slow)
    assert result["status"] == "failed" and "died while running the job" in result["reason"]
    runpod_env.wait_for_workers()  # the emulator, like RunPod, replaces the lost worker


def test_wrong_api_key_is_refused_without_echoing_it(runpod_env, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-wrong-key-0000")
    result = _executor(runpod_env.base_url).run(_run_config())
    assert result["status"] == "failed" and "check RUNPOD_API_KEY" in result["reason"]
    assert "sk-wrong-key-0000" not in str(result)


def test_missing_key_or_endpoint_is_named_before_any_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    status, said = as_the_command_checks(["executor=runpod", f"output_root={tmp_path}"], capsys)
    assert status == 2
    assert "needs the environment variable RUNPOD_API_KEY" in said
    assert "set the environment variable RUNPOD_ENDPOINT_ID" in said
    assert not (tmp_path / "sweeps").exists()


def _files_under(root: Path):
    return [p for p in root.rglob("*") if p.is_file()]


def test_remote_sweep_keeps_jobs_in_flight_and_never_writes_the_key(runpod_env, tmp_path):
    # Two trials in flight at once; one of the four fails (its worker's job FAILED).
    runpod_env.admin("faults", {"fail_jobs": 1})
    proc = run_cli(
        "-m", "executor=runpod", "executor.max_in_flight=2", "executor.poll_interval_s=0.2",
        "hydra.sweeper.n_trials=4", *TINY_OVERRIDES, f"output_root={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    # The failed trial used up nothing of n_trials: four completed, one failed.
    assert (summary["n_trials"], summary["n_completed"], summary["n_failed"]) == (5, 4, 1)
    results = [read_json(sweep_dir / t["job"] / "result.json") for t in summary["trials"]]
    done = [r["remote"] for r in results if r["status"] == "completed"]
    assert len(done) == 4 and all(r["job_id"] for r in done)
    assert all(r["executed_on"]["executor"] == "runpod" for r in results if r["status"] == "completed")
    # Each trial folder keeps the run config exactly as it was sent.
    for trial in summary["trials"]:
        sent = yaml.safe_load((sweep_dir / trial["job"] / "run_config.yaml").read_text())
        assert sent == read_json(sweep_dir / trial["job"] / "result.json")["config"]
    # Completed jobs overlapped in time: the launcher really kept two in flight.
    overlapping = [(a, b) for i, a in enumerate(done) for b in done[i + 1:]
                   if a["submitted_at"] < b["finished_at"] and b["submitted_at"] < a["finished_at"]]
    assert overlapping, done
    # The API key is in no file the sweep wrote, nor in anything it printed.
    for path in _files_under(tmp_path):
        assert SENTINEL_API_KEY.encode() not in path.read_bytes(), path
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr


def test_a_slow_trial_does_not_hold_up_the_others(runpod_env, tmp_path):
    # Two in flight, four trials, one of them far slower: the other three run one after
    # another beside it (in batches, the last two would wait for the slow one to end).
    runpod_env.admin("faults", {"slow_jobs": 1, "slow_job_s": 15})
    proc = run_cli(
        "-m", "executor=runpod", "executor.max_in_flight=2", "executor.poll_interval_s=0.2",
        "hydra.sweeper.n_trials=4", *TINY_OVERRIDES, f"output_root={tmp_path}", "plots=none",
    )
    assert proc.returncode == 0, proc.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    remotes = [read_json(path)["remote"] for path in sorted(sweep_dir.glob("*/result.json"))]
    assert len(remotes) == 4
    slow = [r for r in remotes if r["queue_ms"] >= 15_000]
    assert len(slow) == 1
    others = [r for r in remotes if r is not slow[0]]
    assert all(r["submitted_at"] < slow[0]["finished_at"] for r in others)


def _start_remote_sweep(tmp_path: Path, n_trials: int) -> subprocess.Popen:
    """A remote sweep with two trials in flight, once both jobs are sent (read from its log)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cvsweep", "-m", "executor=runpod", "executor.max_in_flight=2",
         "executor.poll_interval_s=0.2", f"hydra.sweeper.n_trials={n_trials}", *TINY_OVERRIDES,
         f"output_root={tmp_path}", "plots=none"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    sent = 0
    for line in proc.stdout:
        sent += "submitted" in line
        if sent == 2:
            return proc
    raise AssertionError(f"the sweep ended before sending two jobs: exit {proc.wait()}")


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _purge_queue(emulator) -> None:
    import requests

    requests.post(f"{emulator.base_url}/local-endpoint/purge-queue", timeout=10,
                  headers={"Authorization": f"Bearer {SENTINEL_API_KEY}"})


def test_workers_of_a_killed_sweep_exit(runpod_env, tmp_path):
    runpod_env.admin("faults", {"queue_delay_s": 60})  # both trials wait: the sweep is mid-trial
    try:
        proc = _start_remote_sweep(tmp_path, n_trials=2)
        workers = _children(proc.pid)
        assert len(workers) >= 2 and all(_running(w) for w in workers)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _running(w)], "worker processes outlived their sweep"
    finally:
        _purge_queue(runpod_env)


def test_a_killed_worker_process_fails_its_trials_and_the_sweep_goes_on(runpod_env, tmp_path):
    runpod_env.admin("faults", {"queue_delay_s": 3})
    try:
        proc = _start_remote_sweep(tmp_path, n_trials=4)
        os.kill(_children(proc.pid)[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        _purge_queue(runpod_env)
    assert proc.returncode == 0, out
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/optuna.db")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed and len(complete) == 4  # failed trials use up nothing of n_trials
    assert all("worker process failed" in t.user_attrs["cvsweep.result"]["reason"] for t in failed)
    assert "starting 2 new ones" in out


def test_slow_queue_shows_as_queue_time_and_is_billed(runpod_env):
    runpod_env.admin("faults", {"queue_delay_s": 1.5})
    result = _executor(runpod_env.base_url, price_per_hour=3.6).run(_run_config())
    remote = result["remote"]
    assert result["status"] == "completed" and remote["queue_ms"] >= 1500
    # RunPod's delay (the cold start it bills) and execution, at $0.001 a second begun.
    assert remote["billed_ms"] == remote["queue_ms"] + remote["execution_ms"]
    assert remote["cost_usd"] == -(-remote["billed_ms"] // 1000) / 1000
    assert remote["submitted_at"] < remote["finished_at"]


def test_a_result_runpod_drops_at_job_done_is_said_so_and_its_time_recorded(runpod_env):
    runpod_env.admin("faults", {"pad_results_bytes": 10_000_000})  # over RunPod's 10 MB, however small the result
    result = _executor(runpod_env.base_url, price_per_hour=3.6).run(_run_config())
    assert result["status"] == "failed" and "malformed" not in result["reason"]
    assert f"job {result['remote']['job_id']} ended COMPLETED, but RunPod dropped the worker's result" in result["reason"]
    assert result["remote"]["billed_ms"] > 0 and result["remote"]["cost_usd"] > 0  # paid for all the same


def test_a_result_from_another_image_than_executor_image_fails_its_trial(runpod_env):
    result = _executor(runpod_env.base_url, image="registry.example/cvsweep-worker:other").run(_run_config())
    assert result["status"] == "failed" and "fallback" not in result
    assert result["reason"].startswith(f"remote: job {result['remote']['job_id']} ran on image ")
    assert ", not executor.image=registry.example/cvsweep-worker:other: " in result["reason"]


def test_a_job_runpod_refuses_names_runpods_reason_and_the_setting(runpod_env):
    # A policy below RunPod's minimum, sent past the checks before a sweep (which refuse it).
    result = _executor(runpod_env.base_url, execution_timeout_s=1.0, ttl_s=3600.0).run(_run_config())
    assert result["status"] == "failed"
    assert result["reason"].startswith("remote: RunPod refused the job (HTTP 400: policy.executionTimeout must be "
                                       "between 5000 and 604800000 ms (got 1000)); it was sent with "
                                       "executor.execution_timeout_s=1 and executor.ttl_s=3600")
    assert "remote" not in result  # no job exists: nothing was paid


def test_the_sdk_endpoint_api_works_against_the_emulator(runpod_env):
    """The emulator serves what runpod.Endpoint calls: run_sync, run/status, cancel, health."""
    import runpod

    from cvsweep.execution.payload import make_input

    runpod.endpoint_url_base = runpod_env.base_url
    endpoint = runpod.Endpoint("local-endpoint", api_key=SENTINEL_API_KEY)
    assert set(endpoint.health()["workers"]) == {"idle", "initializing", "ready", "running", "throttled", "unhealthy"}
    job_input = make_input(_run_config())
    output = endpoint.run_sync({"input": job_input}, timeout=120)
    assert output["fingerprint"] == job_input["fingerprint"] and output["status"] == "completed"
    runpod_env.admin("faults", {"queue_delay_s": 30})
    job = endpoint.run({"input": job_input})
    assert job.status() == "IN_QUEUE"
    assert job.cancel()["status"] == "CANCELLED" and job.status() == "CANCELLED"
    runpod_env.admin("faults", {"queue_delay_s": 0})  # the refused job would otherwise wait out the delay
    refused = endpoint.run_sync({"input": {"config": {"_target_": "os.system"}}}, timeout=60)
    assert refused is None  # the SDK's run_sync hides a FAILED job: cvsweep checks the status instead


def test_a_broken_first_attempt_uses_up_nothing_of_the_budget(runpod_env, tmp_path):
    """Reproduction: every trial of a first attempt fails (here the endpoint fails its jobs);
    it stops after max_consecutive_failures with the reason, and the same command, once the
    endpoint works, still runs n_trials trials instead of saying "This run started no trial"."""
    runpod_env.admin("faults", {"fail_jobs": 3})
    args = ["-m", "executor=runpod", "executor.max_in_flight=1", "executor.poll_interval_s=0.2",
            "hydra.sweeper.n_trials=2", *TINY_OVERRIDES, f"output_root={tmp_path}", "plots=none"]
    broken = run_cli(*args)
    assert broken.returncode == 1, broken.stderr[-3000:]
    assert "3 trials failed in a row (hydra.sweeper.max_consecutive_failures=3)" in broken.stderr
    assert "the first of them: remote: job " in broken.stderr and "injected failure" in broken.stderr
    fixed = run_cli(*args)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "This run started no trial" not in fixed.stdout and "2 completed, 0 failed" in fixed.stdout
    import optuna

    (name,) = optuna.get_all_study_names(f"sqlite:///{tmp_path}/optuna.db")
    states = [t.state.name for t in optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db").trials]
    assert states == ["FAIL", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
