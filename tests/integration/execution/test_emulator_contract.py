"""The emulator keeps RunPod's documented contract (docs/notes in remote/emulator.py cite each
page): policy bounds, payload limits, TTL over a job's whole life, result retention, the 404 of
a job RunPod no longer keeps. Plain HTTP on 127.0.0.1 to the emulator served by a thread here,
with this test playing the worker through the SDK's worker routes (job-take, job-done,
job-stop); a small time_scale makes RunPod's seconds real fractions of one."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import requests
from conftest import REPO

sys.path.insert(0, str(REPO / "remote"))
from emulator import Emulator, Faults, serve_in_thread  # noqa: E402

KEY = "sk-test-contract"
AUTH = {"Authorization": f"Bearer {KEY}"}
GONE = {"error": "request does not exist"}


class Endpoint:
    """The emulator over HTTP: the client routes under ``/v2/ep``, the worker and admin routes."""

    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.root = f"http://127.0.0.1:{emulator.port}"

    def post(self, route: str, body=None, **kwargs) -> requests.Response:
        return requests.post(f"{self.root}/v2/ep/{route}", json=body, headers=AUTH, timeout=10, **kwargs)

    def get(self, route: str) -> requests.Response:
        return requests.get(f"{self.root}/v2/ep/{route}", headers=AUTH, timeout=10)

    def run(self, **policy) -> str:
        answer = self.post("run", {"input": {"n": 1}, **({"policy": policy} if policy else {})})
        assert answer.status_code == 200, answer.text
        return answer.json()["id"]

    def status(self, job_id: str) -> requests.Response:
        return self.get(f"status/{job_id}")

    def settings(self, **values) -> dict:
        answer = requests.post(f"{self.root}/admin/settings", json=values, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def take(self, worker: str = "worker-a") -> dict:
        answer = requests.get(f"{self.root}/worker/job-take/{worker}", timeout=10)
        assert answer.status_code == 200, answer.status_code
        return answer.json()

    def done(self, job_id: str, body: dict, worker: str = "worker-a") -> requests.Response:
        return requests.post(f"{self.root}/worker/job-done/{worker}/{job_id}", json=body, timeout=10)

    def stops(self, worker: str = "worker-a") -> list[str]:
        answer = requests.get(f"{self.root}/worker/job-stop/{worker}", timeout=10)
        return answer.json()["jobsToStop"] if answer.status_code == 200 else []


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    emulator = Emulator(0, KEY, Faults(), tmp_path_factory.mktemp("contract"))
    server = serve_in_thread(emulator)
    threading.Thread(target=emulator.watch, daemon=True).start()
    yield emulator
    emulator.close()
    server.shutdown()
    server.server_close()


@pytest.fixture
def endpoint(served):
    """The module's emulator with no job, no fault and its first settings."""
    assert requests.post(f"http://127.0.0.1:{served.port}/admin/reset", json={}, timeout=10).status_code == 200
    with served.lock:
        served.jobs.clear()
        served.queue.clear()
        served.stop_signals.clear()
        served.deleted.clear()
    return Endpoint(served)


def until(check, timeout: float = 10.0):
    """``check()``'s first truthy value, polled until ``timeout`` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{check} never held")


# -- settings ----------------------------------------------------------------------------------
def test_settings_change_until_reset_and_unknown_ones_are_refused(endpoint):
    assert endpoint.settings(time_scale=0.5, retention_s=10)["time_scale"] == 0.5
    refused = requests.post(f"{endpoint.root}/admin/settings", json={"retention": 1}, timeout=10)
    assert refused.status_code == 400 and "unknown settings ['retention']" in refused.json()["error"]
    bad = requests.post(f"{endpoint.root}/admin/settings", json={"time_scale": 0}, timeout=10)
    assert bad.status_code == 400 and "time_scale" in bad.json()["error"]
    reset = requests.post(f"{endpoint.root}/admin/reset", json={}, timeout=10).json()
    assert reset["settings"] == {"time_scale": 1.0, "retention_s": 1800.0, "sync_retention_s": 60.0,
                                 "payload_limit_bytes": 10_000_000, "sync_payload_limit_bytes": 20_000_000,
                                 "max_requeues": 3}


# -- policy bounds and payload limits (send-requests.mdx, operation-reference.mdx) -------------
@pytest.mark.parametrize("policy,error", [
    ({"ttl": 1000}, "policy.ttl must be between 10000 and 604800000 ms (got 1000)"),
    ({"ttl": 604_800_001}, "policy.ttl must be between 10000 and 604800000 ms (got 604800001)"),
    ({"executionTimeout": 4999}, "policy.executionTimeout must be between 5000 and 604800000 ms (got 4999)"),
    ({"executionTimeout": "600000"}, "policy.executionTimeout must be between 5000 and 604800000 ms (got 600000)"),
])
def test_a_policy_out_of_runpods_bounds_is_refused(endpoint, policy, error):
    answer = endpoint.post("run", {"input": {}, "policy": policy})
    assert answer.status_code == 400 and answer.json() == {"error": error}
    assert endpoint.emulator.jobs == {}


def test_the_bounds_themselves_are_accepted(endpoint):
    endpoint.run(executionTimeout=5000, ttl=10000)
    endpoint.run(executionTimeout=604_800_000, ttl=604_800_000)


def test_a_run_body_over_the_payload_limit_is_refused(endpoint):
    endpoint.settings(payload_limit_bytes=1000)
    answer = endpoint.post("run", {"input": {"blob": "x" * 1000}})
    assert answer.status_code == 400 and "over the 1000-byte limit of /run" in answer.json()["error"]
    assert endpoint.emulator.jobs == {}
    endpoint.run()  # a small one still goes


# -- TTL over the whole life (send-requests.mdx "TTL vs. execution timeout") -------------------
def test_a_job_whose_ttl_runs_out_in_the_queue_is_deleted(endpoint):
    endpoint.settings(time_scale=0.02)  # 10 s of TTL: 0.2 s
    job = endpoint.run(ttl=10_000)
    assert endpoint.status(job).json()["status"] == "IN_QUEUE"
    assert until(lambda: endpoint.status(job).status_code == 404)
    assert endpoint.status(job).json() == GONE
    assert endpoint.post(f"cancel/{job}").status_code == 404
    assert "ttl" in endpoint.emulator.state()["deleted"][job]


def test_a_ttl_that_runs_out_mid_run_deletes_the_job_and_stops_the_worker(endpoint):
    endpoint.settings(time_scale=0.05)  # 10 s of TTL: 0.5 s; the execution timeout is far off
    job = endpoint.run(ttl=10_000, executionTimeout=600_000)
    assert endpoint.take()["id"] == job
    assert endpoint.status(job).json()["status"] == "IN_PROGRESS"
    assert until(endpoint.stops) == [job]  # the SDK's job-stop channel cancels the handler's task
    assert endpoint.status(job).status_code == 404
    # runpod/runpod-python#56: the worker's late result is answered 404.
    assert endpoint.done(job, {"output": {"ok": True}}).status_code == 404


def test_the_ttl_also_ends_a_kept_result(endpoint):
    endpoint.settings(time_scale=0.05)  # TTL 10 s = 0.5 s, well before 30 minutes of retention
    job = endpoint.run(ttl=10_000)
    endpoint.take()
    assert endpoint.done(job, {"output": {"ok": True}}).status_code == 200
    assert endpoint.status(job).json()["output"] == {"ok": True}
    until(lambda: endpoint.status(job).status_code == 404)


def test_times_are_reported_in_runpod_milliseconds(endpoint):
    endpoint.settings(time_scale=0.01)
    job = endpoint.run()
    time.sleep(0.1)  # at least 10 RunPod seconds in the queue
    endpoint.take()
    endpoint.done(job, {"output": {}})
    assert endpoint.status(job).json()["delayTime"] >= 10_000


# -- retention (send-requests.mdx "Result retention") ------------------------------------------
@pytest.mark.parametrize("result,state", [({"output": {"ok": True}}, "COMPLETED"), ({"error": "boom"}, "FAILED")])
def test_a_finished_job_is_deleted_after_its_retention(endpoint, result, state):
    endpoint.settings(time_scale=0.02, retention_s=10)  # kept 0.2 s
    job = endpoint.run()
    endpoint.take()
    endpoint.done(job, result)
    assert endpoint.status(job).json()["status"] == state
    assert until(lambda: endpoint.status(job).status_code == 404)
    assert endpoint.status(job).json() == GONE
    assert "kept 10s after it ended" in endpoint.emulator.state()["deleted"][job]


def test_a_runsync_result_is_kept_for_its_own_shorter_time(endpoint):
    endpoint.settings(time_scale=0.02, sync_retention_s=5)
    threading.Timer(0.2, lambda: endpoint.done(endpoint.take()["id"], {"output": 7})).start()
    answer = endpoint.post("runsync", {"input": {}}).json()
    assert answer["status"] == "COMPLETED" and answer["output"] == 7 and answer["id"].startswith("sync-")
    until(lambda: endpoint.status(answer["id"]).status_code == 404)
