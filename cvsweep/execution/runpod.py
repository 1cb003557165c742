"""executor=runpod: one trial is one job on a RunPod serverless endpoint running
remote/handler.py, sent and watched through the runpod SDK's client.

The job's input is the entire run config with its fingerprint (cvsweep.execution.payload); the worker
runs the same ``train`` and echoes the fingerprint, which must match. Transient faults
(HTTP 408, 429, 5xx, dropped connections) are retried with backoff (cvsweep/execution/http_retry.py; a
submission only when it was not taken, so a job is never sent twice); a job that ends FAILED,
TIMED_OUT or CANCELLED, an unreachable endpoint or a malformed answer fails the trial with
the reason, or with ``fallback: local`` trains here instead, recorded as such. The API key
comes from RUNPOD_API_KEY and appears in no result, log line or error message.

A trial with a ``prune`` hook (the sweep's pruner) asks it after each epoch the worker reports;
when it says stop, the job is cancelled at once (the GPU stops billing) and the trial comes back
pruned, with the history the worker reported (cvsweep/study/pruning.py).

A trial with a ``model_dir`` asks the worker for its model and writes it there as model.keras
(cvsweep/execution/model_transport.py: inline in the output, or through an S3 store); a model
that does not come home leaves the trial completed, its ``model`` recorded as missing and why.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Optional

from cvsweep import compat
from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import Fallback
from cvsweep.execution import model_transport, remote_jobs
from cvsweep.execution.http_retry import TRANSIENT_HTTP, RetriesStopped, policy
from cvsweep.execution.interrupts import worker_stop
from cvsweep.execution.payload import make_input
from cvsweep.execution.redact import API_KEY_VARIABLE, scrub
from cvsweep.training import failures
from cvsweep.training.process import ask_pruner
from cvsweep.training.result import (
    COMPLETED,
    FAILED,
    Result,
    failed_result,
    finite_number,
    is_completed,
    is_result,
    mark_pruned,
    new_result,
)

log = logging.getLogger("cvsweep.runpod")

ENDPOINT_VARIABLE = "RUNPOD_ENDPOINT_ID"
FINAL_STATES = ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")


class RemoteError(RuntimeError):
    """The remote job gave no usable result."""


class RequestFailed(RemoteError):
    """The endpoint answered an HTTP error that retrying did not cure (``status``: its code)."""

    def __init__(self, message: str, status: int | None):
        super().__init__(message)
        self.status = status


class Unreachable(RemoteError):
    """No answer at all, after the retries: connection refused or dropped, DNS, timeout."""


def missing_settings(cfg) -> list[str]:
    """What executor=runpod lacks before it can send anything (checked before a sweep)."""
    problems = []
    if not os.environ.get(API_KEY_VARIABLE):
        problems.append(f"executor=runpod needs the environment variable {API_KEY_VARIABLE} (your RunPod API key)")
    if not cfg.endpoint_id:
        problems.append(
            f"executor.endpoint_id is not set: set the environment variable {ENDPOINT_VARIABLE} "
            "or executor.endpoint_id=<id>"
        )
    if not str(cfg.base_url).startswith(("http://", "https://")):
        problems.append(f"executor.base_url={cfg.base_url}: must start with http:// or https://")
    return problems + model_transport.client_problems(cfg)


class RunpodExecutor:
    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, run_config: dict, tensorboard_dir: str | None = None,
            progress: Optional[Callable[[dict], None]] = None, model_dir: str | None = None,
            prune: Optional[Callable[[dict], bool]] = None) -> Result:
        # tensorboard_dir: never given (preflight refuses tensorboard=true for remote trials).
        self.model_dir, self.prune = model_dir, prune
        sent_fingerprint = fingerprint(run_config)
        self.job: dict = {}  # endpoint and job id from the moment the job exists, for the record
        try:
            return self._run_remote(run_config, sent_fingerprint, progress)
        except JobPruned as err:
            return self._pruned(run_config, err.update)
        except FingerprintMismatch as err:
            log.error("%s", err)
            return self._failed(run_config, f"remote: {scrub(str(err))}")
        except JobInterrupted as err:  # the sweep is stopping: never a fallback
            return self._failed(run_config, f"interrupted: {scrub(str(err))}", failures.INTERRUPTED)
        except RemoteError as err:
            reason = scrub(str(err))
            log.error("remote trial failed: %s", reason)
            if self.cfg.fallback == Fallback.local:
                return self._fall_back(run_config, reason, progress)
            return self._failed(run_config, f"remote: {reason}")

    def _pruned(self, run_config: dict, update: dict) -> Result:
        """A job the pruner stopped (cancelled): what the worker reported of it, pruned after
        the epoch the pruner judged (its history can hold a later epoch the worker had run)."""
        result = new_result(run_config)
        history = _numbers_by_key(update.get("history"))  # the worker's word: numbers only
        seconds = history.pop("seconds", [])
        result["metrics"].update(epochs_run=update["epoch"], history=history,
                                 train_seconds=round(sum(s for s in seconds if s is not None), 3))
        mark_pruned(result, update["epoch"])  # an epoch _new_epoch accepted
        # Where it trained, as far as its progress says; the worker's own record never came.
        result["executed_on"] = {"executor": "runpod", "worker_id": update.get("worker_id"), "hostname": None}
        result["client_versions"], result["versions"] = result["versions"], {}
        result["remote"] = {**self.job, "worker_id": update.get("worker_id"), "cancelled_at": update.get("cancelled_at")}
        return result

    def _failed(self, run_config: dict, reason: str, code: str = failures.REMOTE_ERROR) -> Result:
        result = failed_result(run_config, failures.Failure(code, reason, infeasible=False))
        result["executed_on"]["executor"] = "runpod"
        if self.job:
            result["remote"] = dict(self.job)
        return result

    def _run_remote(self, run_config: dict, sent_fingerprint: str, progress=None) -> Result:
        endpoint = self._endpoint()
        submitted_at, started = time.time(), time.monotonic()
        transport = model_transport.transport_of(self.cfg) if self.model_dir is not None else None
        body = {
            "input": make_input(run_config, transport),
            "policy": {"executionTimeout": int(self.cfg.execution_timeout_s * 1000), "ttl": int(self.cfg.ttl_s * 1000)},
        }
        if worker_stop().is_set():
            raise JobInterrupted("the sweep was stopped before the job was sent")
        job_id = self._earlier_job(endpoint, sent_fingerprint) or self._submit(endpoint, body, sent_fingerprint)
        self.job = {"endpoint_id": self.cfg.endpoint_id, "job_id": job_id, "submitted_at": round(submitted_at, 3)}
        try:
            status = self._wait(endpoint, job_id, progress, run_config["training"]["epochs"])
        except LostContact:
            raise  # the job may still finish: its ledger entry stays for the next trial of this config
        except RemoteError:
            remote_jobs.forget(self.cfg.endpoint_id, sent_fingerprint)
            raise
        remote_jobs.forget(self.cfg.endpoint_id, sent_fingerprint)
        round_trip = time.monotonic() - started
        state = status.get("status")
        if state != "COMPLETED":
            raise RemoteError(f"job {job_id} ended {state}: {_error_text(status.get('error'))}")
        result = status.get("output")
        if not is_result(result) or result["status"] not in (COMPLETED, FAILED):
            # Only this client prunes (JobPruned): a worker that says "pruned" is not one of ours.
            raise RemoteError(f"job {job_id} returned a malformed result (not a cvsweep result): {str(result)[:200]}")
        if result["fingerprint"] != sent_fingerprint:
            # Loud and never papered over by a fallback: the worker trained something else.
            raise FingerprintMismatch(
                f"job {job_id}: fingerprint mismatch: sent {sent_fingerprint}, the worker echoed "
                f"{result['fingerprint']}: the worker did not train this config"
            )
        # The job may have ended between two polls, after epochs not handed on yet.
        self._hand_on(_epoch_reports(result["metrics"].get("history"), run_config["training"]["epochs"],
                                     self.epochs_handed_on, result["metrics"].get("epochs_run")), progress)
        result["executed_on"]["executor"] = "runpod"
        result["remote"] = {
            "endpoint_id": self.cfg.endpoint_id,
            "job_id": job_id,
            "worker_id": status.get("workerId") or result["executed_on"].get("worker_id"),
            "queue_ms": status.get("delayTime"),
            "execution_ms": status.get("executionTime"),
            "round_trip_s": round(round_trip, 3),
            "submitted_at": round(submitted_at, 3),
            "finished_at": round(submitted_at + round_trip, 3),
            "input_bytes": len(json.dumps(body["input"])),
        }
        self._bring_model_home(result, job_id)
        from cvsweep.training import provenance

        result["client_versions"] = provenance.versions()
        return result

    def _bring_model_home(self, result: dict, job_id: str) -> None:
        """The worker's model into model_dir/model.keras; ``result["model"]`` becomes its record
        (as a local trial's) or says why it is missing."""
        sent = result.pop("model", None)  # never the inline bytes in result.json
        if self.model_dir is None or not is_completed(result):
            return
        if sent is None:
            sent = {"missing": "the worker returned no model (a worker image older than this client, or a job "
                               "collected from an earlier run that asked for none)"}
        result["model"], how = model_transport.bring_home(sent, self.model_dir,
                                                          model_transport.transport_of(self.cfg))
        if how is not None:
            result["remote"]["model_transport"] = how
            log.info("remote job %s: its model came home (%s, %d bytes, %.2f s)", job_id, how["via"],
                     result["model"]["bytes"], how["seconds"])
        else:
            log.warning("remote job %s: its model did not come home: %s", job_id, result["model"]["missing"])

    def _submit(self, endpoint, body: dict, sent_fingerprint: str) -> str:
        timeout = self.cfg.request_timeout_s
        client = compat.runpod_client(endpoint)
        job_id = self._call("submit", lambda: client.post(f"{self.cfg.endpoint_id}/run", body, timeout),
                            interruptible=True, resend_safe=False)["id"]
        remote_jobs.remember(self.cfg.endpoint_id, sent_fingerprint, job_id, time.time())
        log.info("remote job %s submitted (%d bytes)", job_id, len(json.dumps(body)))
        return job_id

    def _earlier_job(self, endpoint, sent_fingerprint: str) -> Optional[str]:
        """A job of this very config that an earlier client submitted and never collected, if
        RunPod still has it queued, running or finished: it is collected, not trained again."""
        entry = remote_jobs.recall(self.cfg.endpoint_id, sent_fingerprint)
        if entry is None:
            return None
        path = f"{self.cfg.endpoint_id}/status/{entry['job_id']}"
        try:
            state = self._call("status", lambda: compat.runpod_client(endpoint).get(path, timeout=self.cfg.request_timeout_s),
                               interruptible=True).get("status")
        except RequestFailed:  # unknown to RunPod now (expired, or another endpoint)
            state = None
        if state in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"):
            log.info("remote job %s of this config, submitted earlier, is %s: collecting it", entry["job_id"], state)
            return entry["job_id"]
        remote_jobs.forget(self.cfg.endpoint_id, sent_fingerprint)
        return None

    def _endpoint(self):
        import runpod
        from requests.adapters import HTTPAdapter

        if not os.environ.get(API_KEY_VARIABLE):
            raise RemoteError(f"the environment variable {API_KEY_VARIABLE} is not set")
        runpod.endpoint_url_base = str(self.cfg.base_url).rstrip("/")
        endpoint = runpod.Endpoint(self.cfg.endpoint_id, api_key=os.environ[API_KEY_VARIABLE])
        # One retry policy, ours, for https too (the SDK's covers http only): each request
        # sets it on this adapter (_call). A trial's requests are sent one after another.
        self.adapter = HTTPAdapter()
        for prefix in ("http://", "https://"):
            compat.http_session(compat.runpod_client(endpoint)).mount(prefix, self.adapter)
        return endpoint

    def _wait(self, endpoint, job_id: str, progress=None, epochs: int = 1) -> dict:
        """Poll until the job reaches a final state; cancel it if it outlives its policy, or
        when the sweep is interrupted (the GPU stops billing). Each new epoch the worker
        reports goes to ``progress``."""
        give_up = time.monotonic() + self.cfg.ttl_s + self.cfg.execution_timeout_s + 60
        path = f"{self.cfg.endpoint_id}/status/{job_id}"
        client = compat.runpod_client(endpoint)
        self.epochs_handed_on = 0
        while True:
            try:  # a status outage is waited out for as long as the job itself may take
                status = self._call("status", lambda: client.get(path, timeout=self.cfg.request_timeout_s),
                                    until=give_up, interruptible=True)
            except JobInterrupted:
                self._cancel(endpoint, job_id)
                raise JobInterrupted(f"the sweep was stopped; job {job_id} cancelled") from None
            except (Unreachable, RequestFailed) as err:
                if isinstance(err, RequestFailed) and err.status not in TRANSIENT_HTTP:
                    raise
                raise LostContact(f"lost contact with job {job_id} until its timeout and TTL had passed ({err}); "
                                  "if it finishes, the next trial of this config collects it") from None
            if status.get("status") in FINAL_STATES:
                return status
            update = _new_epoch(status, self.epochs_handed_on, epochs)
            if update is not None and self._hand_on(_reports_to(update, self.epochs_handed_on, epochs), progress):
                self._cancel_pruned(endpoint, job_id, update["epoch"])
                # The epoch the pruner judged: a poll that missed epochs can carry a later one.
                raise JobPruned({**update, "epoch": self.epochs_handed_on, "worker_id": status.get("workerId"),
                                 "cancelled_at": round(time.time(), 3)})
            if time.monotonic() > give_up:
                self._cancel(endpoint, job_id)
                raise RemoteError(f"job {job_id} reached no final state in time; cancelled")
            if worker_stop().wait(self.cfg.poll_interval_s):
                self._cancel(endpoint, job_id)
                raise JobInterrupted(f"the sweep was stopped; job {job_id} cancelled")

    def _hand_on(self, reports: list[dict], progress) -> bool:
        """Each epoch's report, in order, to the pruner (all of them: a poll may have missed
        some) until it says stop, the last one handed on to ``progress``; whether the pruner
        stops the run. A fault in the pruner never stops one."""
        stop, last = False, None
        for last in reports:
            self.epochs_handed_on = last["epoch"]
            if self.prune is not None and ask_pruner(self.prune, last):
                stop = True
                break
        if last is not None and progress is not None:
            progress(last)
        return stop

    def _cancel_pruned(self, endpoint, job_id: str, epoch: int) -> None:
        """The pruner stopped the trial: its job is cancelled; a cancel that fails leaves the
        trial pruned all the same (the job then runs until its executionTimeout)."""
        try:
            self._cancel(endpoint, job_id)
            log.info("remote job %s: pruned after epoch %s, cancelled", job_id, epoch)
        except RemoteError as err:
            log.warning("remote job %s: pruned after epoch %s, but could not be cancelled: %s", job_id, epoch, err)

    def _cancel(self, endpoint, job_id: str) -> None:
        client = compat.runpod_client(endpoint)
        self._call("cancel", lambda: client.post(f"{self.cfg.endpoint_id}/cancel/{job_id}", None,
                                                 timeout=self.cfg.request_timeout_s))

    def _call(self, what: str, request: Callable[[], Any], until: Optional[float] = None,
              interruptible: bool = False, resend_safe: bool = True) -> Any:
        """One SDK request under the retry policy of cvsweep/execution/http_retry.py: ``retries`` times, or
        until the monotonic time ``until``. ``interruptible``: a stopped sweep ends the wait
        between tries with JobInterrupted (a cancel, by contrast, keeps trying).
        ``resend_safe=False`` (a submission): never sent again once it may have been taken."""
        import requests

        self.adapter.max_retries = policy(what, self.cfg.retries, self.cfg.backoff_s, self.cfg.backoff_max_s,
                                          resend_safe=resend_safe, deadline=until,
                                          stop=worker_stop() if interruptible else None)
        try:
            return request()
        except RetriesStopped:
            raise JobInterrupted(f"the sweep was stopped during a {what} request's retries") from None
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else None
            raise RequestFailed(f"{what} request failed: HTTP {code}", code) from None
        except (requests.ConnectionError, requests.Timeout) as err:
            reason = f"{what} request failed: {type(err).__name__}: {scrub(str(err))[:300]}"
            if not resend_safe and not _retries_used_up(err):  # it went out, and the answer never came
                reason += "; not sent again, as the job may exist"
            raise Unreachable(reason) from None
        except RuntimeError as err:  # the SDK's 401 ("Unauthorized request...")
            raise RequestFailed(f"{what} request refused: {scrub(str(err))} (check {API_KEY_VARIABLE})", 401) from None

    def _fall_back(self, run_config: dict, reason: str, progress=None) -> Result:
        from cvsweep.execution.executors import LocalExecutor

        log.warning("fallback: training this trial here after the remote error")
        result = LocalExecutor(None).run(run_config, progress=progress, model_dir=self.model_dir, prune=self.prune)
        result["fallback"] = {"used": True, "remote_error": reason}
        return result


class FingerprintMismatch(RemoteError):
    pass


class LostContact(RemoteError):
    """No status answer for as long as the job may take: it may still finish (and be collected)."""


class JobInterrupted(RemoteError):
    """The sweep was interrupted (SIGINT / SIGTERM): the job was cancelled or never sent."""


class JobPruned(RemoteError):
    """The sweep's pruner stopped the trial after the epoch in ``update``; its job was cancelled."""

    def __init__(self, update: dict):
        super().__init__(f"pruned after epoch {update['epoch']}")
        self.update = update


def _new_epoch(status: dict, handed_on: int, epochs: int) -> Optional[dict]:
    """While IN_PROGRESS, a job's ``output`` is the worker's latest progress update (train()'s
    epoch report, with the history so far): that update when its epoch is a later one, and
    one the run can have (at most the ``epochs`` this client asked for)."""
    update = status.get("output")
    if status.get("status") != "IN_PROGRESS" or not isinstance(update, dict):
        return None
    epoch = update.get("epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool) and handed_on < epoch <= epochs:
        return update
    return None


def _reports_to(update: dict, handed_on: int, epochs: int) -> list[dict]:
    """The epoch reports after ``handed_on`` up to ``update``'s: the earlier ones from its
    history (when it has them), the last the update itself, as train() reported it."""
    earlier = _epoch_reports(update.get("history"), epochs, handed_on, update["epoch"] - 1)
    return earlier + [{key: value for key, value in update.items() if key != "history"}]


def _epoch_reports(history: Any, epochs: int, handed_on: int, last: Any) -> list[dict]:
    """Epoch reports (as train() makes them) for epochs handed_on+1 .. last, from a history
    that has every one of them; none otherwise."""
    history = _numbers_by_key(history)
    if not history or not isinstance(last, int) or not handed_on < last <= epochs \
            or not all(len(values) >= last for values in history.values()):
        return []
    return [{"epoch": epoch, "epochs": epochs, **{key: values[epoch - 1] for key, values in history.items()}}
            for epoch in range(handed_on + 1, last + 1)]


def _numbers_by_key(history: Any) -> dict:
    """A reported history as {metric: [number or None]}; anything else in it is dropped."""
    if not isinstance(history, dict):
        return {}
    return {key: [finite_number(v) for v in values]
            for key, values in history.items() if isinstance(key, str) and isinstance(values, list)}


def _retries_used_up(err: Exception) -> bool:
    """Whether a requests error ended the retries (urllib3's MaxRetryError inside), rather than
    a fault the policy does not retry."""
    from urllib3.exceptions import MaxRetryError

    return bool(err.args) and isinstance(err.args[0], MaxRetryError)


def _error_text(error: Any) -> str:
    """A worker's error: cvsweep's structured one ({"code", "problems"}) or the SDK's text."""
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            return error
    if isinstance(error, dict) and "code" in error:
        return f"{error['code']}: " + "; ".join(map(str, error.get("problems", [])))
    if isinstance(error, dict) and "error_message" in error:
        return f"{error.get('error_type', 'error')}: {error['error_message']}"
    return str(error) if error is not None else "no error text"


def endpoint_health(cfg) -> dict:
    """The endpoint's answer to ``GET {base_url}/{endpoint_id}/health``, asked with the trials'
    client, key and retry policy (checked before a sweep's first trial). Raises Unreachable,
    RequestFailed, or RemoteError for an answer that is not a JSON object."""
    executor = RunpodExecutor(cfg)
    endpoint = executor._endpoint()
    path = f"{cfg.endpoint_id}/health"
    try:
        health = executor._call("health", lambda: compat.runpod_client(endpoint).get(path, timeout=cfg.request_timeout_s))
    except ValueError as err:  # a 200 whose body is not JSON: a proxy's page, another service
        raise RemoteError(f"the health answer is not JSON ({type(err).__name__})") from None
    if not isinstance(health, dict):
        raise RemoteError(f"the health answer is not a JSON object: {scrub(str(health))[:200]}")
    return health


def check_setup(executor) -> None:
    """Before a run or sweep: the settings executor=runpod needs, then the endpoint's health;
    raises ConfigError."""
    from cvsweep.config.schema import ConfigError

    problems = missing_settings(executor)
    if problems:
        raise ConfigError(*problems)
    _check_endpoint(executor)


# The worker counts of RunPod's health answer ({"jobs": {...}, "workers": {...}}).
WORKER_STATES = ("idle", "initializing", "ready", "running", "throttled", "unhealthy")


def _check_endpoint(executor) -> None:
    """Ask the endpoint's health route, with the trials' client, key and retries, so a wrong
    URL, key or endpoint id, or an endpoint whose every worker fails, stops the sweep now
    instead of failing each of its trials."""
    from cvsweep.config.schema import ConfigError

    endpoint = f"executor.endpoint_id={executor.endpoint_id}"
    try:
        workers = _worker_counts(endpoint_health(executor))
    except Unreachable as err:
        raise ConfigError(scrub(f"executor.base_url={executor.base_url}: cannot reach the endpoint: {err}")) from None
    except RequestFailed as err:
        if err.status in (401, 403):
            raise ConfigError(f"{API_KEY_VARIABLE}: the endpoint refused the key (HTTP {err.status}); "
                              f"set {API_KEY_VARIABLE} to a RunPod API key with access to this endpoint") from None
        if err.status == 404:
            raise ConfigError(f"{endpoint}: no such endpoint at {executor.base_url} (HTTP 404); check "
                              f"executor.endpoint_id (or {ENDPOINT_VARIABLE}) and executor.base_url") from None
        raise ConfigError(scrub(f"{endpoint}: the endpoint's health check failed: {err}")) from None
    except RemoteError as err:
        raise ConfigError(scrub(f"{endpoint}: a malformed health answer from {executor.base_url}: {err}")) from None
    if workers is None:
        raise ConfigError(f"{endpoint}: a malformed health answer from {executor.base_url}: "
                          "no 'workers' object of counts (is executor.base_url RunPod's API?)")
    if workers["unhealthy"] and not any(workers[state] for state in WORKER_STATES if state != "unhealthy"):
        raise ConfigError(f"{endpoint}: every worker of the endpoint is unhealthy ({workers['unhealthy']}): "
                          "its image fails to start or to serve; see the workers' logs in the RunPod console")
    if not any(workers.values()):
        # Scaled to zero (normal) and max workers 0 (a mistake) look alike here: say it, don't refuse.
        log.warning("%s: no worker is up now; the first trial waits for a cold start (if the endpoint's max "
                    "workers is 0, its jobs wait in the queue until executor.ttl_s)", endpoint)


def _worker_counts(health: dict) -> dict | None:
    """The health answer's worker counts by state (absent states count 0), or None when it has
    no ``workers`` object of non-negative whole numbers."""
    workers = health.get("workers")
    if not isinstance(workers, dict):
        return None
    counts = {state: workers.get(state, 0) for state in WORKER_STATES}
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        return None
    return counts
