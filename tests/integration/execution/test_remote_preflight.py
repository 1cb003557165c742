"""executor=runpod asks the endpoint's health before the first trial: a bad remote setup
stops the sweep with exit status 2 and its cause named, before any trial or folder exists,
and the API key is in nothing it prints. Real client, the emulator on 127.0.0.1; each bad setup
through the command's own checks in this process, one of them and a cold start through the real CLI."""

from __future__ import annotations

import socket

import pytest
from conftest import BARE_ENDPOINT_ID, SENTINEL_API_KEY, TINY_OVERRIDES, as_the_command_checks, compose, run_cli

from cvsweep.sweep.preflight import check_run

REVOKED_KEY = "sk-cvsweep-revoked-7d2e"


def _closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def endpoint(bare_endpoint, monkeypatch):
    """The client's environment for the bare endpoint, with clean faults."""
    bare_endpoint.reset_faults()
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", BARE_ENDPOINT_ID)
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", bare_endpoint.base_url)
    return bare_endpoint


SWEEP = ["executor=runpod", "executor.retries=1", "executor.backoff_s=0.1", "hydra.sweeper.n_trials=1", *TINY_OVERRIDES]


def _sweep(tmp_path, *overrides: str):
    return run_cli("-m", *SWEEP, f"output_root={tmp_path}", *overrides)


# case: (faults on the endpoint, environment changes, overrides, what stderr must say)
CASES = {
    "unreachable": ({}, {}, ["executor.base_url=http://127.0.0.1:{port}/v2"],
                    "executor.base_url=http://127.0.0.1:{port}/v2: cannot reach the endpoint: "
                    "health request failed: ConnectionError"),
    "key-refused-401": ({}, {"RUNPOD_API_KEY": REVOKED_KEY}, [],
                        "RUNPOD_API_KEY: the endpoint refused the key (HTTP 401)"),
    "key-refused-403": ({"http_errors": 1, "http_status": 403}, {}, [],
                        "RUNPOD_API_KEY: the endpoint refused the key (HTTP 403)"),
    "no-such-endpoint": ({}, {"RUNPOD_ENDPOINT_ID": "no-such-endpoint"}, [],
                         "executor.endpoint_id=no-such-endpoint: no such endpoint at http://127.0.0.1:"),
    "malformed-answer": ({"malformed_health": 1}, {}, [],
                         f"executor.endpoint_id={BARE_ENDPOINT_ID}: a malformed health answer from "),
    "every-worker-unhealthy": ({"unhealthy_workers": 3}, {}, [],
                               f"executor.endpoint_id={BARE_ENDPOINT_ID}: every worker of the endpoint is unhealthy (3)"),
    "server-errors-beyond-retries": ({"http_errors": 5, "http_status": 503}, {}, [],
                                     f"executor.endpoint_id={BARE_ENDPOINT_ID}: the endpoint's health check failed: "
                                     "health request failed: HTTP 503"),
}


def _bad_setup(case: str, endpoint, monkeypatch) -> tuple[list[str], str]:
    """The case's faults and environment in place: (its overrides, what stderr must say)."""
    faults, environment, overrides, expected = CASES[case]
    port = _closed_port()
    if faults:
        endpoint.admin("faults", faults)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return [o.format(port=port) for o in overrides], expected.format(port=port)


def _nothing_started(endpoint, tmp_path, shown: str) -> None:
    assert "Traceback" not in shown
    # No trial: no sweep folder, no study.
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "optuna.db").exists()
    assert not endpoint.admin("state")["jobs"]
    for key in (SENTINEL_API_KEY, REVOKED_KEY):
        assert key not in shown


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_remote_setup_stops_the_sweep_before_any_trial(case, endpoint, tmp_path, monkeypatch, capsys):
    overrides, expected = _bad_setup(case, endpoint, monkeypatch)
    status, shown = as_the_command_checks([*SWEEP, f"output_root={tmp_path}", *overrides], capsys)
    assert status == 2 and shown.startswith(f"cvsweep: {expected}"), shown[-3000:]
    _nothing_started(endpoint, tmp_path, shown)


@pytest.mark.slow
def test_a_bad_remote_setup_stops_the_real_command_with_exit_status_2(endpoint, tmp_path, monkeypatch):
    overrides, expected = _bad_setup("key-refused-401", endpoint, monkeypatch)
    proc = _sweep(tmp_path, *overrides)
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 2, shown[-3000:]
    assert expected in proc.stderr, proc.stderr[-3000:]
    _nothing_started(endpoint, tmp_path, shown)


@pytest.mark.slow
def test_an_endpoint_with_no_worker_up_is_a_cold_start_not_an_error(endpoint, tmp_path):
    # Scaled to zero and "max workers 0" give the same health answer: the sweep starts and
    # says so. Here no worker ever comes, so RunPod deletes the job at its ttl.
    endpoint.settings(time_scale=0.02)  # the least ttl that covers RunPod's least executionTimeout, 65 s, is 1.3 s here
    proc = _sweep(tmp_path, "executor.execution_timeout_s=5", "executor.ttl_s=65", "executor.poll_interval_s=0.2",
                  "plots=none")
    shown = proc.stdout + proc.stderr
    assert "no worker is up now; the first trial waits for a cold start" in shown
    assert proc.returncode == 1, shown[-3000:]  # the sweep ran; its one job was deleted at its ttl
    assert "was deleted at RunPod (HTTP 404) before it ended: its TTL ran out (executor.ttl_s=65 s" in shown
    assert (tmp_path / "sweeps").exists()
    assert SENTINEL_API_KEY not in shown


def test_transient_errors_of_the_health_check_are_retried_like_a_trials(endpoint, tmp_path):
    endpoint.admin("faults", {"http_errors": 2, "http_status": 503})
    check_run(compose("executor=runpod", "executor.retries=2", "executor.backoff_s=0.1", f"output_root={tmp_path}"))
    assert endpoint.admin("state")["faults"]["http_errors"] == 0  # both were met, then the health answer
