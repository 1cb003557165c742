"""executor=runpod: one trial is one job on a RunPod serverless endpoint running
remote/handler.py, sent and watched through the runpod SDK's client.

The job's input is the entire run config with its fingerprint (cvsweep.execution.payload); the worker
runs the same ``train`` and echoes the fingerprint, which must match. Transient faults
(HTTP 408, 429, 5xx, dropped connections) are retried with backoff (cvsweep/execution/http_retry.py; a
submission only when it was not taken, so a job is never sent twice); a job that ends FAILED,
TIMED_OUT or CANCELLED, an unreachable endpoint or a malformed answer fails the trial with
the reason (RunPod's own words where it gave any, and the setting to change), or with
``fallback: local`` trains here instead, recorded as such. The API key comes from RUNPOD_API_KEY
and appears in no result, log line or error message; the endpoint id and job ids that go into
URLs are of RunPod's form only.

RunPod keeps a job until its TTL runs out (from submission, over queue, run and result) and a
finished job's result 30 minutes (cvsweep/execution/remote_jobs.py): a job deleted before it
ended fails its trial naming executor.ttl_s, a status outage is waited out only while RunPod
can still answer, and a killed sweep's job is collected by the next trial of its config while
RunPod keeps it (a TIMED_OUT one re-queued with /retry), said expired in one line after.
A result records its job's billed time and, with executor.price_per_hour, its cost; with
executor.image, a result from a worker on another image fails its trial.

A trial with a ``prune`` hook (the sweep's pruner) asks it after each epoch the worker reports;
when it says stop, the job is cancelled at once (the GPU stops billing) and the trial comes back
pruned, with the history the worker reported (cvsweep/study/pruning.py).

A trial with a ``model_dir`` asks the worker for its model and writes it there as model.keras
(cvsweep/execution/model_transport.py: inline in the output, or through an S3 store); a model
that does not come home leaves the trial completed, its ``model`` recorded as missing and why.

Three parts: ``RunpodClient`` (one endpoint's requests under one retry policy), ``RemoteJob``
(one trial's job: what it sent, its id, the epochs handed on) and ``RunpodExecutor`` (turns a
job's end into the trial's result). The check before a sweep is cvsweep/execution/checks.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Callable, Optional, Union
from urllib.parse import quote

from urllib3.exceptions import MaxRetryError

from cvsweep import compat
from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import Fallback
from cvsweep.config.validate import ENDPOINT_ID, QUEUE_MARGIN_S
from cvsweep.errors import CvsweepError
from cvsweep.execution import model_transport, remote_jobs
from cvsweep.execution.http_retry import TRANSIENT_HTTP, RetriesStopped, policy
from cvsweep.execution.interrupts import worker_stop
from cvsweep.execution.local import LocalExecutor, ProgressCallback, PruneCallback
from cvsweep.execution.payload import make_input
from cvsweep.execution.prepared import PreparedTrial, prepared_of
from cvsweep.execution.redact import API_KEY_VARIABLE, scrub
from cvsweep.training import failures, provenance
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

FINAL_STATES = ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")
# serverless/endpoints/job-states.mdx lists RUNNING beside IN_PROGRESS: both mean a worker has the job.
RUNNING_STATES = ("IN_PROGRESS", "RUNNING")


# -- how a remote trial fails ----------------------------------------------------------------------
class RemoteError(CvsweepError, RuntimeError):
    """The remote job gave no usable result."""


class RequestFailed(RemoteError):
    """The endpoint answered an HTTP error that retrying did not cure (``status``: its code,
    ``reason``: RunPod's own words from the answer's body, scrubbed, or None)."""

    def __init__(self, message: str, status: int | None, reason: str | None = None):
        super().__init__(message)
        self.status, self.reason = status, reason


class Unreachable(RemoteError):
    """No answer at all, after the retries: connection refused or dropped, DNS, timeout."""


class FingerprintMismatch(RemoteError):
    """The worker echoed another fingerprint than the one sent: it trained something else."""


class ImageMismatch(RemoteError):
    """The worker ran another image than ``executor.image``: a rolling release, or another endpoint."""


class JobDeleted(RemoteError):
    """RunPod no longer has the job (HTTP 404): its TTL ran out, or its result's retention did."""


class LostContact(RemoteError):
    """No status answer for as long as the job may take: it may still finish (and be collected)."""


class JobInterrupted(RemoteError):
    """The sweep was interrupted (SIGINT / SIGTERM): the job was cancelled or never sent."""


class JobPruned(RemoteError):
    """The sweep's pruner stopped the trial after the epoch in ``update``; its job was cancelled
    (``update["epochs_trained"]``: the latest epoch the worker had reported)."""

    def __init__(self, update: dict):
        super().__init__(f"pruned after epoch {update['epoch']}")
        self.update = update


# -- one endpoint's requests -----------------------------------------------------------------------
class RunpodClient:
    """The runpod SDK's client of one endpoint, every request under cvsweep's retry policy
    (cvsweep/execution/http_retry.py), for https too (the SDK's own covers http only).

    Args:
        cfg: The ``executor`` part of the config (executor=runpod's settings).

    Raises:
        RemoteError: RUNPOD_API_KEY is not set.
    """

    def __init__(self, cfg) -> None:
        # The SDK and requests load only when a remote trial or check talks to an endpoint.
        import runpod
        from requests.adapters import HTTPAdapter

        if not os.environ.get(API_KEY_VARIABLE):
            raise RemoteError(f"the environment variable {API_KEY_VARIABLE} is not set")
        if not ENDPOINT_ID.fullmatch(str(cfg.endpoint_id)):  # it goes into every keyed request's URL
            raise RemoteError(f"executor.endpoint_id={cfg.endpoint_id!r}: not a RunPod endpoint id")
        self.cfg = cfg
        runpod.endpoint_url_base = str(cfg.base_url).rstrip("/")
        self.endpoint = runpod.Endpoint(cfg.endpoint_id, api_key=os.environ[API_KEY_VARIABLE])
        self.http = compat.runpod_client(self.endpoint)
        # Each request sets its policy on this adapter (``call``): a client's requests are sent
        # one after another.
        self.adapter = HTTPAdapter()
        for prefix in ("http://", "https://"):
            compat.http_session(self.http).mount(prefix, self.adapter)

    def get(self, what: str, route: str, **retrying) -> Any:
        """``GET {base_url}/{endpoint_id}/{route}`` under ``call``'s retries.

        Args:
            what: The request's name in messages.
            route: The path below the endpoint, e.g. ``status/<job id>``.
            **retrying: ``call``'s options (``until``, ``interruptible``, ``resend_safe``).

        Returns:
            The answer's JSON.

        Raises:
            JobInterrupted: The sweep was stopped during the retries.
            RequestFailed: An HTTP error the retries did not cure, or the key was refused.
            Unreachable: No answer at all.
        """
        path = f"{self.cfg.endpoint_id}/{route}"
        return self.call(what, lambda: self.http.get(path, timeout=self.cfg.request_timeout_s), **retrying)

    def post(self, what: str, route: str, body: Optional[dict], **retrying) -> Any:
        """``POST {base_url}/{endpoint_id}/{route}`` with ``body`` under ``call``'s retries.

        Args:
            what: The request's name in messages.
            route: The path below the endpoint, e.g. ``run``.
            body: The JSON body, or None.
            **retrying: ``call``'s options (``until``, ``interruptible``, ``resend_safe``).

        Returns:
            The answer's JSON.

        Raises:
            JobInterrupted: The sweep was stopped during the retries.
            RequestFailed: An HTTP error the retries did not cure, or the key was refused.
            Unreachable: No answer at all.
        """
        path = f"{self.cfg.endpoint_id}/{route}"
        return self.call(what, lambda: self.http.post(path, body, self.cfg.request_timeout_s), **retrying)

    def call(self, what: str, request: Callable[[], Any], until: Optional[float] = None,
             interruptible: bool = False, resend_safe: bool = True) -> Any:
        """One SDK request under the retry policy: ``retries`` times, or until a deadline.

        Args:
            what: The request's name in messages (``submit``, ``status``, ``cancel``, ``health``).
            request: Sends it and returns the answer's JSON.
            until: Retry until this monotonic time instead of ``retries`` times.
            interruptible: A stopped sweep ends the wait between tries (a cancel, by contrast,
                keeps trying).
            resend_safe: False for a submission: never sent again once it may have been taken.

        Returns:
            The answer's JSON.

        Raises:
            JobInterrupted: The sweep was stopped during the retries.
            RequestFailed: An HTTP error the retries did not cure, or the key was refused.
            Unreachable: No answer at all.
        """
        import requests  # with the SDK: only where an endpoint is talked to

        self.adapter.max_retries = policy(what, self.cfg.retries, self.cfg.backoff_s, self.cfg.backoff_max_s,
                                          resend_safe=resend_safe, deadline=until,
                                          stop=worker_stop() if interruptible else None)
        try:
            return request()
        except RetriesStopped:
            raise JobInterrupted(f"the sweep was stopped during a {what} request's retries") from None
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else None
            reason = _answer_reason(err.response)
            raise RequestFailed(f"{what} request failed: HTTP {code}" + (f": {reason}" if reason else ""),
                                code, reason) from None
        except (requests.ConnectionError, requests.Timeout) as err:
            reason = f"{what} request failed: {type(err).__name__}: {scrub(str(err))[:300]}"
            if not resend_safe and not _retries_used_up(err):  # it went out, and the answer never came
                reason += "; not sent again, as the job may exist"
            raise Unreachable(reason) from None
        except RuntimeError as err:  # the SDK's 401 ("Unauthorized request...")
            raise RequestFailed(f"{what} request refused: {scrub(str(err))} (check {API_KEY_VARIABLE})", 401) from None


# -- one trial's job -------------------------------------------------------------------------------
class RemoteJob:
    """One trial's job at the endpoint: sent (or collected from an earlier client), watched
    until it ends, its result checked and its model brought home. Everything one run learns
    (the job's id and policy, when it was sent, started and ended, the epochs handed on, the
    last status) lives here, so an executor holds no per-call state.

    Args:
        cfg: executor=runpod's settings.
        run_config: The run config the job trains.
        progress: Called with each epoch the worker reports.
        model_dir: Where the worker's model goes (None: none asked for).
        prune: Asked after each epoch the worker reports; True cancels the job (pruned).
    """

    def __init__(self, cfg, run_config: dict, progress: Optional[ProgressCallback] = None,
                 model_dir: str | None = None, prune: Optional[PruneCallback] = None) -> None:
        self.cfg, self.run_config = cfg, run_config
        self.progress, self.model_dir, self.prune = progress, model_dir, prune
        self.fingerprint = fingerprint(run_config)
        self.ids: dict = {}  # endpoint and job id from the moment the job exists, for the record
        self.epochs_handed_on = 0
        self.epochs_reported = 0  # the latest epoch the worker reported, handed on or not
        self.last_status: dict = {}
        self.client: Optional[RunpodClient] = None
        # The job's ledger entry (cvsweep/execution/remote_jobs.py): its policy and times.
        self.entry: dict = {}

    def run(self) -> Result:
        """Send the job (or collect this config's earlier one) and wait for its result.

        Returns:
            The worker's result, checked, with where and how it ran (``remote``).

        Raises:
            RemoteError: The job gave no usable result; a subclass says how (JobPruned,
                JobInterrupted, JobDeleted, FingerprintMismatch, ImageMismatch, LostContact,
                RequestFailed, Unreachable).
        """
        self.client = RunpodClient(self.cfg)
        started = time.monotonic()
        transport = model_transport.transport_of(self.cfg) if self.model_dir is not None else None
        body = {
            "input": make_input(self.run_config, transport),
            "policy": {"executionTimeout": int(self.cfg.execution_timeout_s * 1000), "ttl": int(self.cfg.ttl_s * 1000)},
        }
        if worker_stop().is_set():
            raise JobInterrupted("the sweep was stopped before the job was sent")
        job_id = self._earlier_job() or self._submit(body)
        submitted_at = self.entry.get("submitted_at") or time.time()
        self.ids = {"endpoint_id": self.cfg.endpoint_id, "job_id": job_id, "submitted_at": round(submitted_at, 3)}
        try:
            status = self._wait(job_id)
        except LostContact:
            raise  # the job may still finish: its ledger entry stays for the next trial of this config
        except RemoteError:
            remote_jobs.forget(self.cfg.endpoint_id, self.fingerprint)
            raise
        remote_jobs.forget(self.cfg.endpoint_id, self.fingerprint)
        round_trip = time.monotonic() - started
        state = status.get("status")
        if state != "COMPLETED":
            raise RemoteError(f"job {job_id} ended {state}: {_error_text(status.get('error'))}")
        if status.get("output") is None:
            # serverless/workers/handler-functions.mdx: a result over the payload limit is refused at
            # job-done, and the job reads COMPLETED without it.
            raise RemoteError(
                f"job {job_id} ended COMPLETED, but RunPod dropped the worker's result (refused at job-done, "
                "most likely over RunPod's payload limit of 10 MB for /run); the GPU time was paid: lower "
                "executor.max_inline_model_mb or set executor.artifact_store.url so the model travels outside it")
        result = status["output"]
        if not is_result(result) or result["status"] not in (COMPLETED, FAILED):
            # Only this client prunes (JobPruned): a worker that says "pruned" is not one of ours.
            raise RemoteError(f"job {job_id} returned a malformed result (not a cvsweep result): {str(result)[:200]}")
        if result["fingerprint"] != self.fingerprint:
            # Loud and never papered over by a fallback: the worker trained something else.
            raise FingerprintMismatch(
                f"job {job_id}: fingerprint mismatch: sent {self.fingerprint}, the worker echoed "
                f"{result['fingerprint']}: the worker did not train this config"
            )
        self._check_image(job_id, result)
        # The job may have ended between two polls, after epochs not handed on yet.
        epochs = self.run_config["training"]["epochs"]
        self._hand_on(_epoch_reports(result["metrics"].get("history"), epochs, self.epochs_handed_on,
                                     result["metrics"].get("epochs_run")))
        result["executed_on"]["executor"] = "runpod"
        result["remote"] = {
            "endpoint_id": self.cfg.endpoint_id,
            "job_id": job_id,
            "worker_id": status.get("workerId") or result["executed_on"].get("worker_id"),
            "queue_ms": status.get("delayTime"),
            "execution_ms": status.get("executionTime"),
            **self._billing(status),
            "round_trip_s": round(round_trip, 3),
            "submitted_at": round(submitted_at, 3),
            "finished_at": round(self.entry.get("finished_at") or time.time(), 3),
            "input_bytes": len(json.dumps(body["input"])),
        }
        self._bring_model_home(result, job_id)
        result["client_versions"] = provenance.versions()
        return result

    def pruned(self, update: dict) -> Result:
        """A job the pruner stopped (cancelled): what the worker reported of it, pruned after
        the epoch the pruner judged (its history can hold a later epoch the worker had run).

        Args:
            update: The worker's progress update, its ``epoch`` the one the pruner judged and
                ``epochs_trained`` the latest the worker had reported.

        Returns:
            The pruned trial's result; its ``remote`` records the epochs the worker trained and
            the execution time (and cost) RunPod last reported.
        """
        result = new_result(self.run_config)
        history = _numbers_by_key(update.get("history"))  # the worker's word: numbers only
        seconds = history.pop("seconds", [])
        result["metrics"].update(epochs_run=update["epoch"], history=history,
                                 train_seconds=round(sum(s for s in seconds if s is not None), 3))
        mark_pruned(result, update["epoch"])  # an epoch _new_epoch accepted
        # Where it trained, as far as its progress says; the worker's own record never came.
        result["executed_on"] = {"executor": "runpod", "worker_id": update.get("worker_id"), "hostname": None}
        result["client_versions"], result["versions"] = result["versions"], {}
        result["remote"] = {**self.ids, "worker_id": update.get("worker_id"),
                            "cancelled_at": update.get("cancelled_at"), **self._spent()}
        return result

    def failed(self, reason: str, code: str = failures.REMOTE_ERROR) -> Result:
        """The failed trial's result, with the job's ids once it existed and, once it ran,
        what RunPod last reported of its time (and cost) and the epochs the worker trained.

        Args:
            reason: Why it failed (scrubbed of secrets by the caller).
            code: The failure's code (cvsweep/training/failures.py).

        Returns:
            The failed trial's result.
        """
        result = failed_result(self.run_config, failures.Failure(code, reason, infeasible=False))
        result["executed_on"]["executor"] = "runpod"
        if self.ids:
            result["remote"] = {**self.ids, **(self._spent() if self.last_status else {})}
        return result

    def _spent(self) -> dict:
        """What the job used of the GPU as far as the last status says: the epochs the worker
        reported, its execution time and billed time (and cost)."""
        return {"epochs_trained": self.epochs_reported, "execution_ms": self.last_status.get("executionTime"),
                **self._billing(self.last_status)}

    def _billing(self, status: dict) -> dict:
        """``billed_ms`` (execution plus delay, which holds the cold start RunPod bills) and
        ``cost_usd`` at ``executor.price_per_hour``: an estimate, as RunPod bills each worker's
        whole life, rounded up to the second (serverless/pricing.mdx)."""
        parts = [status.get("executionTime"), status.get("delayTime")]
        if not all(isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0 for ms in parts):
            return {"billed_ms": None, "cost_usd": None}
        billed_ms = int(sum(parts))
        price = self.cfg.price_per_hour
        cost = None if price is None else round(math.ceil(billed_ms / 1000) * price / 3600, 6)
        return {"billed_ms": billed_ms, "cost_usd": cost}

    def _check_image(self, job_id: str, result: dict) -> None:
        """With ``executor.image`` set, a result from a worker on another image fails the trial:
        during a rolling release a sweep is never silently mixed."""
        expected = self.cfg.image
        ran = result["executed_on"].get("image")
        if expected and ran != expected:
            raise ImageMismatch(
                f"job {job_id} ran on image {ran or 'unknown (a worker that does not report its image)'}, not "
                f"executor.image={expected}: the endpoint serves another image (a rolling release under way?); "
                "wait until it serves this one, or set executor.image to the image you mean to sweep on")

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

    def _submit(self, body: dict) -> str:
        try:
            answer = self.client.post("submit", "run", body, interruptible=True, resend_safe=False)
        except RequestFailed as err:
            if err.status != 400:
                raise
            raise RemoteError(
                f"RunPod refused the job (HTTP 400: {err.reason or 'no reason given'}); it was sent with "
                f"executor.execution_timeout_s={self.cfg.execution_timeout_s:g} and executor.ttl_s={self.cfg.ttl_s:g} "
                f"(RunPod allows 5 s to 7 days and 10 s to 7 days) and {len(json.dumps(body))} bytes (RunPod's "
                "limit for /run: 10 MB); change the setting RunPod names") from None
        job_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(job_id, str) or not remote_jobs.JOB_ID.fullmatch(job_id):
            raise RemoteError(f"the submit answer has no job id of RunPod's form: {scrub(str(answer))[:200]}")
        submitted_at = time.time()
        self.entry = remote_jobs.remember(self.cfg.endpoint_id, self.fingerprint, job_id, submitted_at,
                                          self.cfg.ttl_s, self.cfg.execution_timeout_s)
        log.info("remote job %s submitted (%d bytes)", job_id, len(json.dumps(body)))
        return job_id

    def _earlier_job(self) -> Optional[str]:
        """A job of this very config that an earlier client submitted and never collected, if
        RunPod still has it queued, running or finished: it is collected, not trained again.
        One that RunPod no longer has (or can no longer have) is said so in one line."""
        entry = remote_jobs.recall(self.cfg.endpoint_id, self.fingerprint)
        if entry is None:
            return None
        job_id, until = entry["job_id"], remote_jobs.answerable_until(entry)
        state = None  # None: RunPod has it no more (404), or cannot have it by now
        if until is None or time.time() < until:
            try:
                state = self.client.get("status", f"status/{quote(job_id, safe='')}", interruptible=True).get("status")
            except RequestFailed as err:
                if err.status != 404:
                    state = f"unknown ({err})"
        if state in ("IN_QUEUE", *RUNNING_STATES, "COMPLETED"):
            log.info("remote job %s of this config, submitted earlier, is %s: collecting it", job_id, state)
            self.entry = entry
            return job_id
        if state == "TIMED_OUT" and self._requeued(entry):
            return job_id
        if state is None:
            log.warning("remote job %s of this config expired at RunPod (%s); the trial trains again", job_id,
                        remote_jobs.expiry_reason(entry, time.time()))
        else:
            log.warning("remote job %s of this config, submitted earlier, is %s; the trial trains again", job_id, state)
        remote_jobs.forget(self.cfg.endpoint_id, self.fingerprint)
        return None

    def _requeued(self, entry: dict) -> bool:
        """An earlier job that ended TIMED_OUT, re-queued with ``/retry`` (same id and input,
        nothing sent again) instead of a new ``/run``, where its TTL, which still counts from
        the first submission, leaves room for another execution timeout and the queue margin
        (serverless/endpoints/operation-reference.mdx: /retry requeues FAILED or TIMED_OUT jobs)."""
        job_id, timeout = entry["job_id"], entry.get("execution_timeout_s") or self.cfg.execution_timeout_s
        if entry.get("submitted_at") is None or \
                entry["submitted_at"] + entry["ttl_s"] - time.time() < timeout + QUEUE_MARGIN_S:
            return False
        try:
            self.client.post("retry", f"retry/{quote(job_id, safe='')}", None, interruptible=True, resend_safe=False)
        except JobInterrupted:
            raise
        except RemoteError as err:
            log.warning("remote job %s of this config ended TIMED_OUT and could not be retried (%s)", job_id, err)
            return False
        log.info("remote job %s of this config, submitted earlier, ended TIMED_OUT: re-queued with /retry", job_id)
        self.entry = {**entry, "started_at": None, "finished_at": None}
        remote_jobs.mark(self.cfg.endpoint_id, self.fingerprint, started_at=None, finished_at=None)
        return True

    def _wait(self, job_id: str) -> dict:
        """Poll until the job reaches a final state; cancel it if it outlives its policy, or
        when the sweep is interrupted (the GPU stops billing). Each new epoch the worker
        reports goes to ``progress``. A status outage is waited out for as long as RunPod can
        still answer for the job (remote_jobs.answerable_until)."""
        epochs = self.run_config["training"]["epochs"]
        self.epochs_handed_on = 0
        route = f"status/{quote(job_id, safe='')}"
        while True:
            until = remote_jobs.answerable_until(self.entry) or time.time()
            give_up = time.monotonic() + max(0.0, until - time.time())
            try:
                status = self.client.get("status", route, until=give_up, interruptible=True)
            except JobInterrupted:
                self._cancel(job_id)
                raise JobInterrupted(f"the sweep was stopped; job {job_id} cancelled") from None
            except (Unreachable, RequestFailed) as err:
                if isinstance(err, RequestFailed) and err.status == 404:
                    # It never read final here, so no result retention ran out: its TTL did.
                    ttl = self.entry.get("ttl_s", self.cfg.ttl_s)
                    raise JobDeleted(f"job {job_id} was deleted at RunPod (HTTP 404) before it ended: its TTL ran out "
                                     f"(executor.ttl_s={ttl:g} s from submission covers queue, run and result, and "
                                     "RunPod deletes the job when it runs out, even mid-run); raise executor.ttl_s"
                                     ) from None
                if isinstance(err, RequestFailed) and err.status not in TRANSIENT_HTTP:
                    raise
                raise LostContact(f"lost contact with job {job_id} for as long as RunPod could answer for it ({err}); "
                                  "if it finishes, the next trial of this config collects it") from None
            self._seen(status)
            if status.get("status") in FINAL_STATES:
                return status
            update = _new_epoch(status, self.epochs_handed_on, epochs)
            if update is not None and self._hand_on(_reports_to(update, self.epochs_handed_on, epochs)):
                self._cancel_pruned(job_id, update["epoch"])
                # The epoch the pruner judged: a poll that missed epochs can carry a later one.
                raise JobPruned({**update, "epoch": self.epochs_handed_on, "epochs_trained": self.epochs_reported,
                                 "worker_id": status.get("workerId"), "cancelled_at": round(time.time(), 3)})
            if time.monotonic() > give_up:
                self._cancel(job_id)
                raise RemoteError(f"job {job_id} reached no final state while RunPod kept it "
                                  f"(executor.ttl_s={self.entry.get('ttl_s', self.cfg.ttl_s):g} s from submission); "
                                  "cancelled")
            if worker_stop().wait(self.cfg.poll_interval_s):
                self._cancel(job_id)
                raise JobInterrupted(f"the sweep was stopped; job {job_id} cancelled")

    def _seen(self, status: dict) -> None:
        """What a status answer tells of the job: when it started or ended (into its ledger
        entry, bounding how long RunPod keeps it) and the latest epoch the worker reported."""
        self.last_status = status
        state, now = status.get("status"), round(time.time(), 3)
        if state in FINAL_STATES and self.entry.get("finished_at") is None:
            self.entry["finished_at"] = now
            remote_jobs.mark(self.cfg.endpoint_id, self.fingerprint, finished_at=now)
        elif state in RUNNING_STATES and self.entry.get("started_at") is None:
            self.entry["started_at"] = now
            remote_jobs.mark(self.cfg.endpoint_id, self.fingerprint, started_at=now)
        elif state == "IN_QUEUE" and self.entry.get("started_at") is not None:  # requeued: it starts again
            self.entry["started_at"] = None
            remote_jobs.mark(self.cfg.endpoint_id, self.fingerprint, started_at=None)
        update = status.get("output")
        if state in RUNNING_STATES and isinstance(update, dict):
            epoch = update.get("epoch")
            if isinstance(epoch, int) and not isinstance(epoch, bool):
                self.epochs_reported = max(self.epochs_reported, epoch)

    def _hand_on(self, reports: list[dict]) -> bool:
        """Each epoch's report, in order, to the pruner (all of them: a poll may have missed
        some) until it says stop, the last one handed on to ``progress``; whether the pruner
        stops the run. A fault in the pruner never stops one."""
        stop, last = False, None
        for last in reports:
            self.epochs_handed_on = last["epoch"]
            if self.prune is not None and ask_pruner(self.prune, last):
                stop = True
                break
        if last is not None and self.progress is not None:
            self.progress(last)
        return stop

    def _cancel_pruned(self, job_id: str, epoch: int) -> None:
        """The pruner stopped the trial: its job is cancelled; a cancel that fails leaves the
        trial pruned all the same (the job then runs until its executionTimeout)."""
        try:
            self._cancel(job_id)
            log.info("remote job %s: pruned after epoch %s, cancelled", job_id, epoch)
        except RemoteError as err:
            log.warning("remote job %s: pruned after epoch %s, but could not be cancelled: %s", job_id, epoch, err)

    def _cancel(self, job_id: str) -> None:
        """Cancel the job; the cancel's answer (its status, with the execution time so far) is
        the job's last status."""
        answer = self.client.post("cancel", f"cancel/{quote(job_id, safe='')}", None)
        if isinstance(answer, dict) and "executionTime" in answer:
            self.last_status = answer


# -- the executor ----------------------------------------------------------------------------------
class RunpodExecutor:
    """Runs each trial as one job on the endpoint ``cfg`` names; a job that gives no usable
    result fails the trial, or with ``fallback: local`` trains it here.

    Args:
        cfg: executor=runpod's settings (the ``executor`` part of the config).
    """

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, trial: Union[PreparedTrial, dict], tensorboard_dir: str | None = None,
            progress: Optional[ProgressCallback] = None, model_dir: str | None = None,
            prune: Optional[PruneCallback] = None) -> Result:
        """Run the trial as a remote job.

        Args:
            trial: The prepared trial (or its plain run config).
            tensorboard_dir: Never given (preflight refuses tensorboard=true for remote trials).
            progress: Called with each epoch the worker reports.
            model_dir: Where the worker's model goes (None: none asked for).
            prune: Asked after each epoch; True cancels the job and the trial comes back pruned.

        Returns:
            The trial's result: the worker's, a pruned or failed one, or the fallback's.
        """
        run_config = prepared_of(trial).run_config
        job = RemoteJob(self.cfg, run_config, progress, model_dir, prune)
        try:
            return job.run()
        except JobPruned as err:
            return job.pruned(err.update)
        except (FingerprintMismatch, ImageMismatch) as err:
            log.error("%s", err)
            return job.failed(f"remote: {scrub(str(err))}")
        except JobInterrupted as err:  # the sweep is stopping: never a fallback
            return job.failed(f"interrupted: {scrub(str(err))}", failures.INTERRUPTED)
        except RemoteError as err:
            reason = scrub(str(err))
            log.error("remote trial failed: %s", reason)
            if self.cfg.fallback == Fallback.local:
                log.warning("fallback: training this trial here after the remote error")
                result = LocalExecutor(None).run(trial, progress=progress, model_dir=model_dir, prune=prune)
                result["fallback"] = {"used": True, "remote_error": reason}
                return result
            return job.failed(f"remote: {reason}")


# -- the worker's progress, as epoch reports -------------------------------------------------------
def _new_epoch(status: dict, handed_on: int, epochs: int) -> Optional[dict]:
    """While IN_PROGRESS (or RUNNING), a job's ``output`` is the worker's latest progress update (train()'s
    epoch report, with the history so far): that update when its epoch is a later one, and
    one the run can have (at most the ``epochs`` this client asked for)."""
    update = status.get("output")
    if status.get("status") not in RUNNING_STATES or not isinstance(update, dict):
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


def _answer_reason(response: Any) -> Optional[str]:
    """RunPod's reason in an error answer: its JSON ``error`` (the queue API's), ``message`` or
    ``detail``, else the body's text; one line, scrubbed of secrets, at most 300 characters."""
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = next((body[key] for key in ("error", "message", "detail") if body.get(key)), body)
    text = " ".join(str(body or "").split())
    return scrub(text)[:300] or None
