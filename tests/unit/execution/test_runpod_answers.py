"""What the client does with each answer RunPod documents, against a scripted RunPod queue API
over real HTTP on 127.0.0.1 (a seam: each job's /status answers in turn, no worker, no
training): RunPod's reason for a refused job and the setting to change, a job deleted by its
TTL, a result RunPod dropped, RUNNING as running, an earlier client's job collected or said to
have expired (never paid for twice silently), a status outage waited out only while RunPod can
still answer, what each job cost, and a result from another image than executor.image."""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TINY_RUN
from omegaconf import OmegaConf

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import RunpodExecutorConfig, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution import remote_jobs
from cvsweep.execution.runpod import RunpodExecutor
from cvsweep.training.result import new_result

ENDPOINT = "fake-endpoint"
JOB = "5c6e1f0a-77c2-4bd4-9c51-0d0e3b5c7f7e-u1"
EARLIER = "0f3ab4c2-1d5e-4c7a-9b8e-2a6f4d3c1b0a-u1"
DELETED = (404, {"error": "request does not exist"})


class ScriptedRunpod:
    """RunPod's queue API as a script: ``statuses[job]`` are that job's /status answers in turn
    (the last one repeats), ``submitted`` the answer to /run, ``cancelled`` the one to /cancel,
    ``retried`` the one to /retry."""

    def __init__(self) -> None:
        self.statuses: dict[str, list] = {}
        self.submitted = (200, {"id": JOB, "status": "IN_QUEUE"})
        self.cancelled = (200, {"id": JOB, "status": "CANCELLED"})
        self.retried = (200, {"id": EARLIER, "status": "IN_QUEUE"})
        self.requests: list[tuple[str, str]] = []

    def answer(self, method: str, path: str) -> tuple[int, dict]:
        self.requests.append((method, path))
        prefix, _, route = path.partition(f"/v2/{ENDPOINT}/")
        if prefix or not route:
            return 404, {"error": "no such endpoint"}
        if method == "POST" and route == "run":
            return self.submitted
        if method == "POST" and route.startswith("cancel/"):
            return self.cancelled
        if method == "POST" and route.startswith("retry/"):
            return self.retried
        if method == "GET" and route.startswith("status/"):
            script = self.statuses.get(route.split("/", 1)[1], [DELETED])
            return script.pop(0) if len(script) > 1 else script[0]
        return 404, {"error": "unknown route"}

    def routes(self, method: str) -> list[str]:
        return [path.split(f"/v2/{ENDPOINT}/", 1)[1] for m, path in self.requests if m == method]


@pytest.fixture
def runpod(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-test-answers")
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))  # a ledger of this test's own
    script = ScriptedRunpod()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._reply(*script.answer("GET", self.path))

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(*script.answer("POST", self.path))

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    script.base_url = f"http://127.0.0.1:{server.server_address[1]}/v2"
    yield script
    server.shutdown()
    server.server_close()


def _executor(runpod: ScriptedRunpod, **changes) -> RunpodExecutor:
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": ENDPOINT, "base_url": runpod.base_url, "poll_interval_s": 0.01, "retries": 1,
                    "backoff_s": 0.01, "backoff_max_s": 0.05, **changes})
    return RunpodExecutor(cfg)


def _run_config() -> dict:
    return run_config_of(load_run_config(copy.deepcopy(TINY_RUN)))


def _worker_result(run_config: dict, image: str | None = None) -> dict:
    """A completed result as the worker returns it, two epochs trained."""
    result = json.loads(json.dumps(new_result(run_config)))
    result["metrics"] = {"epochs_run": 2, "val_accuracy": 0.5,
                         "history": {"loss": [1.0, 0.5], "val_accuracy": [0.4, 0.5], "seconds": [1.0, 1.0]}}
    result["executed_on"]["worker_id"] = "worker-1"
    if image is not None:
        result["executed_on"]["image"] = image
    return result


def _running(epoch: int, state: str = "IN_PROGRESS", **times) -> tuple[int, dict]:
    """A status while the worker trains: its progress update after ``epoch`` as ``output``."""
    history = {"loss": [1.0 / e for e in range(1, epoch + 1)], "val_accuracy": [0.1 * e for e in range(1, epoch + 1)]}
    update = {"epoch": epoch, "epochs": 2, "loss": history["loss"][-1], "val_accuracy": history["val_accuracy"][-1],
              "history": history}
    return 200, {"id": JOB, "status": state, "output": update, "workerId": "worker-1", **times}


def _completed(output, **times) -> tuple[int, dict]:
    return 200, {"id": JOB, "status": "COMPLETED", "workerId": "worker-1", "delayTime": 2300, "executionTime": 61_200,
                 **({"output": output} if output is not None else {}), **times}


# -- RunPod's reasons --------------------------------------------------------------------------------
def test_a_refused_job_says_runpods_reason_and_the_settings_it_was_sent_with(runpod):
    runpod.submitted = (400, {"error": "policy.ttl must be between 10000 and 604800000 ms (got 1000)"})
    result = _executor(runpod).run(_run_config())
    assert result["status"] == "failed"
    assert result["reason"].startswith("remote: RunPod refused the job (HTTP 400: policy.ttl must be between 10000 "
                                       "and 604800000 ms (got 1000)); it was sent with executor.execution_timeout_s=3600 "
                                       "and executor.ttl_s=86400 (RunPod allows 5 s to 7 days and 10 s to 7 days)")
    assert runpod.routes("POST") == ["run"]  # sent once, never again


def test_a_job_deleted_mid_run_names_its_ttl_and_the_setting(runpod):
    runpod.statuses[JOB] = [_running(1), DELETED]
    result = _executor(runpod, ttl_s=700.0, execution_timeout_s=600.0).run(_run_config())
    assert result["status"] == "failed"
    assert result["reason"] == (f"remote: job {JOB} was deleted at RunPod (HTTP 404) before it ended: its TTL ran out "
                                "(executor.ttl_s=700 s from submission covers queue, run and result, and RunPod deletes "
                                "the job when it runs out, even mid-run); raise executor.ttl_s")
    assert remote_jobs.recall(ENDPOINT, fingerprint(_run_config())) is None  # gone at RunPod: gone here


def test_a_result_runpod_dropped_is_said_so_not_called_malformed(runpod):
    runpod.statuses[JOB] = [_completed(None)]
    result = _executor(runpod).run(_run_config())
    assert result["status"] == "failed" and "malformed" not in result["reason"]
    assert f"job {JOB} ended COMPLETED, but RunPod dropped the worker's result" in result["reason"]
    assert "executor.max_inline_model_mb" in result["reason"] and "executor.artifact_store.url" in result["reason"]
    assert result["remote"]["billed_ms"] == 63_500  # the GPU time was paid all the same, and recorded


def test_other_http_errors_carry_runpods_words(runpod):
    runpod.statuses[JOB] = [(403, {"error": "this key has no access to the endpoint"})]
    result = _executor(runpod).run(_run_config())
    assert "status request failed: HTTP 403: this key has no access to the endpoint" in result["reason"]


# -- RUNNING is running -------------------------------------------------------------------------------
def test_running_is_relayed_and_asks_the_pruner_as_in_progress_does(runpod):
    run_config = _run_config()
    runpod.statuses[JOB] = [_running(1, "RUNNING"), _completed(_worker_result(run_config))]
    relayed, judged = [], []
    result = _executor(runpod).run(run_config, progress=lambda r: relayed.append(r["epoch"]),
                                   prune=lambda r: judged.append(r["epoch"]) and False)
    assert result["status"] == "completed", result.get("reason")
    assert relayed == [1, 2] and judged == [1, 2]


def test_a_pruned_job_records_the_epochs_the_worker_trained_and_its_billed_time(runpod):
    runpod.statuses[JOB] = [_running(3, "RUNNING", delayTime=1000, executionTime=4000)]
    runpod.cancelled = (200, {"id": JOB, "status": "CANCELLED", "delayTime": 1000, "executionTime": 4500})
    run_config = _run_config()
    run_config["training"]["epochs"] = 4
    result = _executor(runpod, price_per_hour=3.6).run(run_config, prune=lambda report: report["epoch"] == 1)
    assert result["status"] == "pruned" and result["pruned"] == {"epoch": 1}  # the epoch the pruner judged
    remote = result["remote"]
    assert remote["epochs_trained"] == 3  # ... while the worker had trained three
    assert remote["execution_ms"] == 4500 and remote["billed_ms"] == 5500
    assert remote["cost_usd"] == 0.006  # 6 s begun at $3.60 an hour
    assert runpod.routes("POST") == ["run", f"cancel/{JOB}"]


# -- an earlier client's job -----------------------------------------------------------------------------
def _left_behind(**entry) -> str:
    """A ledger entry as a killed sweep leaves it; the fingerprint of _run_config()'s job."""
    fp = fingerprint(_run_config())
    times = {"submitted_at": time.time() - 60, "ttl_s": 86400.0, "execution_timeout_s": 3600.0, **entry}
    remote_jobs.remember(ENDPOINT, fp, EARLIER, times.pop("submitted_at"), times.pop("ttl_s"),
                         times.pop("execution_timeout_s"))
    if times:
        remote_jobs.mark(ENDPOINT, fp, **times)
    return fp


def test_a_killed_sweeps_running_job_is_collected_with_no_second_run(runpod, caplog):
    _left_behind()
    run_config = _run_config()
    done = _completed(_worker_result(run_config))
    runpod.statuses[EARLIER] = [(200, {"id": EARLIER, "status": "RUNNING"}), (200, {"id": EARLIER, "status": "RUNNING"}),
                                (200, {**done[1], "id": EARLIER})]
    with caplog.at_level(logging.INFO, logger="cvsweep.runpod"):
        result = _executor(runpod).run(run_config)
    assert result["status"] == "completed", result.get("reason")
    assert result["remote"]["job_id"] == EARLIER and "run" not in runpod.routes("POST")
    assert f"remote job {EARLIER} of this config, submitted earlier, is RUNNING: collecting it" in caplog.text


def test_an_earlier_job_runpod_no_longer_has_is_said_in_one_line_and_trained_again(runpod, caplog):
    _left_behind(finished_at=time.time() - 600)  # RunPod answers 404 for it
    runpod.statuses[JOB] = [_completed(_worker_result(_run_config()))]
    with caplog.at_level(logging.INFO, logger="cvsweep.runpod"):
        result = _executor(runpod).run(_run_config())
    assert result["status"] == "completed" and result["remote"]["job_id"] == JOB
    lines = [r.getMessage() for r in caplog.records if EARLIER in r.getMessage()]
    assert lines == [f"remote job {EARLIER} of this config expired at RunPod (RunPod keeps a job's result 30 min "
                     "after it ends, then deletes it); the trial trains again"]
    assert runpod.routes("POST") == ["run"]


@pytest.mark.parametrize("entry, why", [
    ({"finished_at": time.time() - 31 * 60}, "RunPod keeps a job's result 30 min after it ends, then deletes it"),
    ({"submitted_at": time.time() - 2 * 86400}, "its TTL ran out (executor.ttl_s=86400 s from submission"),
], ids=["past-retention", "past-ttl"])
def test_an_earlier_job_past_what_runpod_keeps_is_not_asked_for(runpod, caplog, entry, why):
    _left_behind(**entry)
    runpod.statuses[JOB] = [_completed(_worker_result(_run_config()))]
    with caplog.at_level(logging.INFO, logger="cvsweep.runpod"):
        result = _executor(runpod).run(_run_config())
    assert result["status"] == "completed"
    assert f"status/{EARLIER}" not in runpod.routes("GET")
    assert f"remote job {EARLIER} of this config expired at RunPod ({why}" in caplog.text
    assert "the trial trains again" in caplog.text


def test_a_status_outage_is_waited_out_only_while_runpod_can_still_answer(runpod):
    fp = _left_behind(submitted_at=time.time() - 100, ttl_s=101.5)  # its TTL ends in about 1.5 s
    runpod.statuses[EARLIER] = [(200, {"id": EARLIER, "status": "IN_QUEUE"}), (503, {"error": "unavailable"})]
    # Retried every 0.2 s: 150 retries would take half a minute; the TTL leaves room for a few.
    result = _executor(runpod, retries=150, backoff_s=0.2, backoff_max_s=0.2).run(_run_config())
    assert result["status"] == "failed" and result["reason"].startswith(f"remote: lost contact with job {EARLIER}")
    assert runpod.routes("GET").count(f"status/{EARLIER}") < 20  # nothing to wait for past the TTL
    assert remote_jobs.recall(ENDPOINT, fp)["job_id"] == EARLIER  # it stays for the next run to ask


def test_the_ledger_records_the_jobs_policy_and_when_it_started(runpod, monkeypatch):
    fp = fingerprint(_run_config())
    seen = {}
    runpod.statuses[JOB] = [_running(1), DELETED]
    original = remote_jobs.forget

    def forget(endpoint_id, fingerprint_):  # the entry as it was when the job was given up
        seen.update(remote_jobs.recall(endpoint_id, fingerprint_) or {})
        original(endpoint_id, fingerprint_)

    monkeypatch.setattr(remote_jobs, "forget", forget)
    _executor(runpod, ttl_s=700.0, execution_timeout_s=600.0).run(_run_config())
    monkeypatch.setattr(remote_jobs, "forget", original)
    assert seen["job_id"] == JOB and seen["ttl_s"] == 700.0 and seen["execution_timeout_s"] == 600.0
    assert seen["submitted_at"] <= seen["started_at"] <= time.time() and seen["finished_at"] is None
    assert remote_jobs.recall(ENDPOINT, fp) is None


# -- cost and image ------------------------------------------------------------------------------------
@pytest.mark.parametrize("price, cost", [(None, None), (4.176, 0.07424)])
def test_a_completed_job_records_its_billed_time_and_cost(runpod, price, cost):
    run_config = _run_config()
    runpod.statuses[JOB] = [_completed(_worker_result(run_config))]
    result = _executor(runpod, price_per_hour=price).run(run_config)
    remote = result["remote"]
    assert remote["billed_ms"] == 63_500 and remote["cost_usd"] == cost  # 64 s begun
    assert remote["submitted_at"] <= remote["finished_at"] <= time.time()


def test_a_result_from_another_image_fails_its_trial_naming_both(runpod):
    run_config = _run_config()
    runpod.statuses[JOB] = [_completed(_worker_result(run_config, image="cvsweep-worker:old"))]
    result = _executor(runpod, image="cvsweep-worker:new").run(run_config)
    assert result["status"] == "failed"
    assert result["reason"].startswith(f"remote: job {JOB} ran on image cvsweep-worker:old, not "
                                       "executor.image=cvsweep-worker:new")
    runpod.statuses[JOB] = [_completed(_worker_result(run_config, image="cvsweep-worker:new"))]
    assert _executor(runpod, image="cvsweep-worker:new").run(run_config)["status"] == "completed"


def test_a_job_id_not_of_runpods_form_is_never_put_in_a_url(runpod):
    runpod.submitted = (200, {"id": "../../steal", "status": "IN_QUEUE"})
    result = _executor(runpod).run(_run_config())
    assert result["status"] == "failed" and "no job id of RunPod's form" in result["reason"]
    assert runpod.routes("GET") == []


def test_an_earlier_job_that_timed_out_is_requeued_with_retry_while_its_ttl_leaves_room(runpod, caplog):
    _left_behind(submitted_at=time.time() - 600)
    run_config = _run_config()
    done = _completed(_worker_result(run_config))[1]
    runpod.statuses[EARLIER] = [(200, {"id": EARLIER, "status": "TIMED_OUT"}), (200, {"id": EARLIER, "status": "IN_QUEUE"}),
                                (200, {**done, "id": EARLIER})]
    with caplog.at_level(logging.INFO, logger="cvsweep.runpod"):
        result = _executor(runpod).run(run_config)
    assert result["status"] == "completed" and result["remote"]["job_id"] == EARLIER
    assert runpod.routes("POST") == [f"retry/{EARLIER}"]  # the same job again: no second /run
    assert f"remote job {EARLIER} of this config, submitted earlier, ended TIMED_OUT: re-queued with /retry" in caplog.text


def test_an_earlier_job_that_timed_out_with_too_little_ttl_left_is_trained_again_in_a_new_job(runpod):
    _left_behind(submitted_at=time.time() - 86_400 + 3_000)  # 50 min of its TTL left: less than one more hour's run
    runpod.statuses[EARLIER] = [(200, {"id": EARLIER, "status": "TIMED_OUT"})]
    runpod.statuses[JOB] = [_completed(_worker_result(_run_config()))]
    result = _executor(runpod).run(_run_config())
    assert result["status"] == "completed" and result["remote"]["job_id"] == JOB
    assert runpod.routes("POST") == ["run"]
