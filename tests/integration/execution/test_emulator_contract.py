"""The emulator keeps RunPod's documented contract (docs/notes in remote/emulator.py cite each
page): policy bounds, payload limits, TTL over a job's whole life, result retention, the 404 of
a job RunPod no longer keeps. Plain HTTP on 127.0.0.1 to the emulator served by a thread here,
with this test playing the worker through the SDK's worker routes (job-take, job-done,
job-stop); a small time_scale makes RunPod's seconds real fractions of one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import REPO

sys.path.insert(0, str(REPO / "remote"))
from emulator import DEFAULT_IMAGE, Emulator, Faults, serve_in_thread  # noqa: E402

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

    def faults(self, **values) -> None:
        assert requests.post(f"{self.root}/admin/faults", json=values, timeout=10).status_code == 200

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
    # A seam: a worker is a process that can die; ``sleep`` stands in for handler.py.
    emulator._spawn = lambda worker_id: subprocess.Popen(["sleep", "60"], env=emulator.worker_env(worker_id))
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
        served.retried = 0
        for process in served.processes.values():
            process.kill()
        served.processes.clear()
        served.worker_versions.clear()
        served.retiring.clear()
        served.polled.clear()
        del served.releases[:-1]  # the first release only, of the first image
        served.container.update(image=DEFAULT_IMAGE, env={})
        served.stuck_versions.clear()
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
                                 "max_requeues": 3, "v1_retired": False}


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


# -- RUNNING, /cancel of a finished job (job-states.mdx, operation-reference.mdx) ----------------
def test_running_shows_for_the_jobs_the_fault_names_as_in_progress_does(endpoint):
    endpoint.faults(running_state_jobs=1)
    first, second = endpoint.run(), endpoint.run()
    endpoint.take("worker-a"), endpoint.take("worker-b")
    endpoint.done(first, {"status": "IN_PROGRESS", "output": {"epoch": 1}}, worker="worker-a")
    assert endpoint.status(first).json()["output"] == {"epoch": 1}  # progress reads as while IN_PROGRESS
    assert [endpoint.status(job).json()["status"] for job in (first, second)] == ["RUNNING", "IN_PROGRESS"]
    assert endpoint.get("health").json()["jobs"]["inProgress"] == 2
    assert endpoint.post(f"cancel/{first}").json()["status"] == "CANCELLED"
    assert until(lambda: endpoint.stops("worker-a")) == [first]


def test_cancel_of_a_finished_job_answers_its_final_status_and_keeps_the_result(endpoint):
    job = endpoint.run()
    endpoint.take()
    endpoint.done(job, {"output": {"ok": True}})
    answer = endpoint.post(f"cancel/{job}")
    assert answer.status_code == 200 and answer.json()["status"] == "COMPLETED"
    assert endpoint.status(job).json()["output"] == {"ok": True}
    assert endpoint.post("cancel/no-such-job").json() == GONE


# -- /retry and /stream (operation-reference.mdx) ----------------------------------------------
def test_retry_requeues_a_failed_job_under_its_id_without_its_output(endpoint):
    job = endpoint.run()
    assert endpoint.take()["id"] == job
    endpoint.done(job, {"error": "boom"})
    answer = endpoint.post(f"retry/{job}")
    assert answer.status_code == 200 and answer.json() == {"id": job, "status": "IN_QUEUE"}
    assert endpoint.status(job).json() == {"id": job, "status": "IN_QUEUE"}
    assert endpoint.take()["id"] == job  # the same input again
    endpoint.done(job, {"output": 1})
    assert endpoint.status(job).json()["status"] == "COMPLETED"
    assert endpoint.get("health").json()["jobs"]["retried"] == 1
    refused = endpoint.post(f"retry/{job}")
    assert refused.status_code == 400 and "is COMPLETED; only FAILED or TIMED_OUT" in refused.json()["error"]
    assert endpoint.post("retry/no-such-job").json() == GONE


def test_stream_hands_out_each_output_once_and_the_result_at_the_end(endpoint):
    job = endpoint.run()
    endpoint.take()
    endpoint.done(job, {"status": "IN_PROGRESS", "output": {"epoch": 1}})
    assert endpoint.get(f"stream/{job}").json() == {"id": job, "status": "IN_PROGRESS",
                                                     "stream": [{"output": {"epoch": 1}}]}
    assert endpoint.get(f"stream/{job}").json()["stream"] == []
    endpoint.done(job, {"output": {"ok": True}})
    assert endpoint.get(f"stream/{job}").json() == {"id": job, "status": "COMPLETED",
                                                     "stream": [{"output": {"ok": True}}]}
    assert endpoint.get("stream/no-such-job").status_code == 404


# -- a worker that dies mid-job (endpoint-configurations.mdx, job-states.mdx) ------------------
def test_a_job_whose_worker_dies_is_requeued_then_timed_out(endpoint):
    endpoint.settings(max_requeues=1)
    with endpoint.emulator.lock:
        endpoint.emulator.processes["worker-d"] = endpoint.emulator._spawn("worker-d")
    job = endpoint.run()
    for _ in range(2):
        assert endpoint.take("worker-d")["id"] == job
        endpoint.emulator.processes["worker-d"].kill()
        state = until(lambda: (status := endpoint.status(job).json())["status"] in ("IN_QUEUE", "TIMED_OUT")
                      and status)
    assert state["status"] == "TIMED_OUT" and "worker-d died while running the job" in state["error"]
    assert "requeued 1 times" in state["error"]
    assert endpoint.get("health").json()["jobs"]["retried"] == 1


# -- a result over the payload limit (handler-functions.mdx "Payload limits") ------------------
def test_a_result_over_the_payload_limit_is_refused_and_the_job_completes_without_output(endpoint):
    endpoint.settings(payload_limit_bytes=1000)
    job = endpoint.run()
    endpoint.take()
    assert endpoint.done(job, {"output": "x" * 1000}).status_code == 400
    assert endpoint.status(job).json().keys() == {"id", "status", "delayTime", "executionTime", "workerId"}
    assert endpoint.status(job).json()["status"] == "COMPLETED"


def test_padding_drives_the_refusal_with_a_small_result_once(endpoint):
    endpoint.settings(payload_limit_bytes=1000)
    endpoint.faults(pad_results_bytes=1000)
    dropped, kept = endpoint.run(), endpoint.run()
    endpoint.take("worker-a"), endpoint.take("worker-b")
    assert endpoint.done(dropped, {"output": 1}, worker="worker-a").status_code == 400
    assert endpoint.done(kept, {"output": 2}, worker="worker-b").status_code == 200
    assert "output" not in endpoint.status(dropped).json() and endpoint.status(kept).json()["output"] == 2


# -- REST v2 (api-reference-v2/openapi.json, rolling-releases.mdx) -----------------------------
def rest(endpoint, method: str, path: str, body=None, headers=AUTH) -> requests.Response:
    return requests.request(method, f"{endpoint.root}/v2/serverless/{path}", json=body, headers=headers, timeout=10)


def start_workers(endpoint, *names: str) -> dict:
    with endpoint.emulator.lock:
        for name in names:
            endpoint.emulator._start(name)
        return {name: endpoint.emulator.processes[name].pid for name in names}


def image_of(pid: int) -> str:
    environ = dict(item.split("=", 1) for item in open(f"/proc/{pid}/environ").read().split("\0") if "=" in item)
    return environ["CVSWEEP_IMAGE"]


def test_a_new_image_makes_a_release_that_rolls_out_as_workers_finish(endpoint):
    pids = start_workers(endpoint, "worker-idle", "worker-busy")
    job = endpoint.run()
    assert endpoint.take("worker-busy")["id"] == job
    assert image_of(pids["worker-idle"]) == DEFAULT_IMAGE
    got = rest(endpoint, "GET", "ep").json()
    assert got["id"] == "ep" and got["image"] == DEFAULT_IMAGE and "templateId" not in got
    assert got["requestUrls"]["retry"].endswith("/v2/ep/retry/{job_id}")

    patched = rest(endpoint, "PATCH", "ep", {"image": "registry/cvsweep:abc"})
    assert patched.status_code == 200 and patched.json()["image"] == "registry/cvsweep:abc"
    releases = rest(endpoint, "GET", "ep/releases").json()
    assert releases["endpointVersion"] == 2 and [r["version"] for r in releases["releases"]] == [2, 1]
    newest = releases["releases"][0]
    assert newest["diff"] == [{"field": "template.imageName", "old": DEFAULT_IMAGE, "new": "registry/cvsweep:abc"}]
    assert newest["source"] == "MANUAL" and newest["buildId"] is None and newest["workerCount"] == 2
    # The idle worker is replaced at once; the busy one keeps the old image until its job ends.
    replaced = until(lambda: (pid := endpoint.emulator.processes["worker-idle"].pid) != pids["worker-idle"] and pid)
    assert image_of(replaced) == "registry/cvsweep:abc"
    assert rest(endpoint, "GET", "ep/releases").json()["rollout"] == {
        "inProgress": True, "workersOnLatest": 1, "workersTotal": 2, "percentOnLatest": 50}
    assert endpoint.emulator.processes["worker-busy"].pid == pids["worker-busy"]
    endpoint.done(job, {"output": 1}, worker="worker-busy")
    done = until(lambda: not (rollout := rest(endpoint, "GET", "ep/releases").json()["rollout"])["inProgress"]
                 and rollout)
    assert done == {"inProgress": False, "workersOnLatest": 2, "workersTotal": 2, "percentOnLatest": 100}
    assert image_of(endpoint.emulator.processes["worker-busy"].pid) == "registry/cvsweep:abc"


def test_the_same_image_again_makes_no_release(endpoint):
    assert rest(endpoint, "PATCH", "ep", {"image": DEFAULT_IMAGE}).status_code == 200
    releases = rest(endpoint, "GET", "ep/releases").json()
    assert releases["endpointVersion"] == 1 and releases["rollout"]["inProgress"] is False
    assert releases["rollout"]["workersTotal"] == 0 and releases["rollout"]["percentOnLatest"] == 0


def test_a_stuck_rollout_replaces_no_worker(endpoint):
    pids = start_workers(endpoint, "worker-a")
    endpoint.faults(stuck_rollouts=1)
    rest(endpoint, "PATCH", "ep", {"image": "registry/cvsweep:stuck"})
    time.sleep(0.5)  # several rounds of the emulator's watch, none of which may replace the worker
    assert endpoint.emulator.processes["worker-a"].pid == pids["worker-a"]
    assert rest(endpoint, "GET", "ep/releases").json()["rollout"]["inProgress"] is True


@pytest.mark.parametrize("body,headers,status,detail", [
    ({"image": ""}, AUTH, 422, "Request validation failed."),
    ({"imageName": "x"}, AUTH, 422, "Request validation failed."),
    ({"image": "x"}, {}, 401, "missing or invalid bearer token"),
])
def test_rest_v2_errors_are_problem_details(endpoint, body, headers, status, detail):
    answer = rest(endpoint, "PATCH", "ep", body, headers=headers)
    assert answer.status_code == status and answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["status"] == status and answer.json()["detail"] == detail and answer.json()["title"]
    assert rest(endpoint, "GET", "ep/releases").json()["endpointVersion"] == 1


def test_rest_v1_answers_its_retirement_once_retired(endpoint):
    assert requests.get(f"{endpoint.root}/v1/endpoints/ep", headers=AUTH, timeout=10).status_code == 200
    endpoint.settings(v1_retired=True)
    answer = requests.get(f"{endpoint.root}/v1/endpoints/ep", headers=AUTH, timeout=10)
    assert answer.status_code == 404 and answer.json() == {
        "message": "REST API v1 was retired on November 15, 2026; use https://api.runpod.io/v2"}
