"""Ctrl-C while a job's status request is being retried: the job is cancelled at the endpoint
(the GPU stops billing), as it is when the stop comes between two polls. Real HTTP on
127.0.0.1 against the emulator's API, served in this process; no worker, so the job stays
queued and nothing trains."""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import time

import pytest
from conftest import REPO, TINY_RUN
from omegaconf import OmegaConf

from cvsweep.config.schema import RunpodExecutorConfig, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution import interrupts
from cvsweep.execution.runpod import RunpodExecutor

sys.path.insert(0, str(REPO / "remote"))
from emulator import Emulator, Faults, serve_in_thread  # noqa: E402

OUTAGE = 10**6  # status requests that fail: more than any poll retries


@pytest.fixture
def endpoint(tmp_path, monkeypatch):
    """An emulated endpoint with no workers, and a client set up to talk to it."""
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-test-interrupt")
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))  # no earlier job to collect
    emulator = Emulator(0, "sk-test-interrupt", Faults(), tmp_path)
    server = serve_in_thread(emulator)
    # This process takes SIGTERM as a forked launcher worker does: as the sweep's stop.
    previous = signal.signal(signal.SIGTERM, interrupts.WorkerStop()._handle)
    yield emulator
    signal.signal(signal.SIGTERM, previous)
    server.shutdown()
    server.server_close()


def _executor(emulator: Emulator) -> RunpodExecutor:
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": "local-endpoint", "base_url": f"http://127.0.0.1:{emulator.port}/v2",
                    "poll_interval_s": 0.1, "retries": 3, "backoff_s": 0.05, "backoff_max_s": 0.2})
    return RunpodExecutor(cfg)


def _stop_once_a_status_request_failed(emulator: Emulator) -> None:
    """The sweep's stop (SIGTERM, as the sweep process sends a forked worker), once the poll is in its retries:
    the status outage never ends, so from then on the client is inside the retried request."""
    give_up = time.monotonic() + 60  # a hung client fails the test below, not this thread
    while emulator.faults.status_errors == OUTAGE and time.monotonic() < give_up:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_during_a_retried_status_request_cancels_the_job(endpoint):
    endpoint.faults.status_errors = OUTAGE  # every status request: HTTP 503, retried
    stopper = threading.Thread(target=_stop_once_a_status_request_failed, args=(endpoint,), daemon=True)
    stopper.start()
    result = _executor(endpoint).run(run_config_of(load_run_config(copy.deepcopy(TINY_RUN))))
    stopper.join()
    job_id = result["remote"]["job_id"]
    assert endpoint.faults.status_errors < OUTAGE  # the stop came while a status request failed
    assert endpoint.jobs[job_id].status == "CANCELLED" and endpoint.cancelled == [job_id]
    assert result["status"] == "failed" and result["failure"]["code"] == "interrupted"
    assert result["reason"] == f"interrupted: the sweep was stopped; job {job_id} cancelled"


def test_a_stop_between_polls_cancels_the_job(endpoint):
    """The same stop with the endpoint answering: seen in the wait between two polls."""
    original = endpoint.submit

    def submit_then_stop(body):
        job = original(body)
        os.kill(os.getpid(), signal.SIGTERM)  # after the job exists: the first poll's wait sees it
        return job

    endpoint.submit = submit_then_stop
    result = _executor(endpoint).run(run_config_of(load_run_config(copy.deepcopy(TINY_RUN))))
    job_id = result["remote"]["job_id"]
    assert endpoint.faults.status_errors == 0
    assert endpoint.jobs[job_id].status == "CANCELLED" and endpoint.cancelled == [job_id]
    assert result["reason"] == f"interrupted: the sweep was stopped; job {job_id} cancelled"
