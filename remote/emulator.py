"""A local RunPod serverless emulator: the cloud's control plane on 127.0.0.1, real workers.

    python remote/emulator.py --port 8765 --workers 2

It serves the part of RunPod's serverless API that the ``runpod`` SDK client calls
(``POST /v2/{endpoint}/run``, ``/runsync``, ``GET /v2/{endpoint}/status/{job}``,
``POST /v2/{endpoint}/cancel/{job}``, ``/retry/{job}``, ``GET /v2/{endpoint}/stream/{job}``,
``GET /v2/{endpoint}/health``, ``POST .../purge-queue``) and the job queue that the SDK's worker
loop polls (``RUNPOD_WEBHOOK_GET_JOB``, ``RUNPOD_WEBHOOK_POST_OUTPUT`` and the per-job stop
channel), and it runs N real worker processes of ``remote/handler.py``. It also serves RunPod's
REST v2 routes of a deploy (``GET``/``PATCH /v2/serverless/{id}``, ``GET .../releases``: a new
image is a release that rolls out as workers cycle; the retired v1 routes answer 404). So the real client and the real worker loop talk over HTTP as in production, but for the
cloud, with RunPod's documented time and size rules (policy bounds, TTL, result retention,
payload limits), each citing its page of RunPod's docs. Rehearse a remote sweep with:

    RUNPOD_API_KEY=anything RUNPOD_ENDPOINT_ID=local \\
    python -m cvsweep -m executor=runpod executor.base_url=http://127.0.0.1:8765/v2

Faults, for tests and rehearsals: ``POST /admin/faults`` with a JSON object of the fields of
``Faults`` (or ``--faults '{...}'`` at start); settings (``time_scale`` shrinks every RunPod
duration) likewise through ``POST /admin/settings`` or their flags; ``POST /admin/reset`` restores
both; ``GET /admin/state`` shows jobs and workers.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

HANDLER = Path(__file__).resolve().with_name("handler.py")
FINAL_STATES = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}
# serverless/endpoints/job-states.mdx lists both for a job a worker is processing.
RUNNING_STATES = {"IN_PROGRESS", "RUNNING"}
LONG_POLL_S = 2.0  # how long a worker's job-take or job-stop request is held open
GONE = {"error": "request does not exist"}  # the answer for a job RunPod no longer keeps
DEFAULT_IMAGE = "cvsweep-worker:emulated"
# api-reference-v2/migrate-from-v1.mdx: v1's error shape is {"message": ...}.
V1_RETIRED = {"message": "REST API v1 was retired on November 15, 2026; use https://api.runpod.io/v2"}
# api-reference-v2/openapi.json: PATCH /v2/serverless/{id} takes these fields; image and env
# change the container, so they make a release.
V2_FIELDS = {"name", "image", "env", "args", "disk", "ports", "registry", "workers", "scaling", "timeout",
             "flashboot", "gpu", "cpu", "dataCenterIds", "networkVolumes"}
RELEASE_FIELDS = {"image": "template.imageName", "env": "template.env"}
# serverless/endpoints/send-requests.mdx "Execution policies": executionTimeout 5 s to 7 days, ttl 10 s to 7 days (ms).
POLICY_BOUNDS_MS = {"executionTimeout": (5_000, 604_800_000), "ttl": (10_000, 604_800_000)}
# Same table: executionTimeout defaults to 10 minutes, ttl to 24 hours.
DEFAULT_EXECUTION_TIMEOUT_S = 600.0
DEFAULT_TTL_S = 86_400.0


@dataclass
class Settings:
    """How the emulated endpoint keeps time and size (``POST /admin/settings``, ``--time-scale`` ...)."""

    time_scale: float = 1.0  # real seconds per RunPod second, for every RunPod duration (policy, retention)
    # serverless/endpoints/send-requests.mdx "Result retention": /run results kept 30 minutes after completion.
    retention_s: float = 1800.0
    sync_retention_s: float = 60.0  # same page: /runsync results kept 1 minute
    # serverless/endpoints/operation-reference.mdx: maximum payload 10 MB for /run, 20 MB for /runsync.
    payload_limit_bytes: int = 10_000_000
    sync_payload_limit_bytes: int = 20_000_000
    max_requeues: int = 3  # a job whose worker died goes back to the queue this often, then TIMED_OUT

    def problem(self) -> Optional[str]:
        """What is wrong with these values, if anything."""
        if not isinstance(self.time_scale, (int, float)) or isinstance(self.time_scale, bool) or self.time_scale <= 0:
            return "time_scale must be a number > 0"
        for name in ("retention_s", "sync_retention_s", "payload_limit_bytes", "sync_payload_limit_bytes", "max_requeues"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                return f"{name} must be a number >= 0"
        return None


def policy_problem(policy) -> Optional[str]:
    """Why RunPod would refuse this ``policy`` (None: it would not)."""
    if policy is None:
        return None
    if not isinstance(policy, dict):
        return "policy must be an object"
    for name, (low, high) in POLICY_BOUNDS_MS.items():
        value = policy.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return f"policy.{name} must be between {low} and {high} ms (got {value})"
    return None


@dataclass
class Faults:
    """Each count is used up as its fault fires."""

    fail_jobs: int = 0  # the next N jobs end FAILED without running
    time_out_jobs: int = 0  # the next N jobs end TIMED_OUT without running
    cancel_jobs: int = 0  # the next N jobs end CANCELLED without running
    http_status: int = 503  # the status that http_errors answers with (429, 503, ...)
    http_errors: int = 0  # the next N client API requests get http_status
    drop_connections: int = 0  # the next N client API requests: connection closed, no answer
    status_errors: int = 0  # the next N job status requests get http_status (a status outage)
    kill_workers: int = 0  # the next N jobs: their worker is killed (SIGKILL) mid-job (the job is requeued)
    kill_after_s: float = 1.0
    malformed_results: int = 0  # the next N results are replaced by malformed output
    wrong_fingerprints: int = 0  # the next N results echo another fingerprint
    pruned_results: int = 0  # the next N results claim status "pruned" (only a client prunes)
    queue_delay_s: float = 0.0  # every job waits this long before a worker may take it
    slow_jobs: int = 0  # the next N jobs wait slow_job_s longer (a trial far slower than the rest)
    slow_job_s: float = 10.0
    malformed_health: int = 0  # the next N health answers have no "workers" object
    unhealthy_workers: int = 0  # health counts this many more workers, all unhealthy (a crash-looping image)
    corrupt_models: int = 0  # the next N results with an inline model: one byte of the model changed
    stuck_rollouts: int = 0  # the next N REST v2 releases never roll out (no worker is replaced)
    running_state_jobs: int = 0  # the next N jobs read RUNNING instead of IN_PROGRESS while they run
    pad_results_bytes: int = 0  # the next result counts this many bytes more against the payload limit

    def take(self, name: str) -> bool:
        """Whether the fault ``name`` fires now (its count is then one less)."""
        if getattr(self, name) > 0:
            setattr(self, name, getattr(self, name) - 1)
            return True
        return False


@dataclass
class Job:
    id: str
    input: object
    execution_timeout_s: float  # RunPod seconds
    ttl_s: float  # RunPod seconds
    sync: bool = False  # sent with /runsync: its own retention and payload limit
    time_scale: float = 1.0  # real seconds per RunPod second, for the times it reports
    submitted: float = field(default_factory=time.monotonic)
    status: str = "IN_QUEUE"
    started: Optional[float] = None
    finished: Optional[float] = None
    worker_id: Optional[str] = None
    output: object = None
    error: object = None
    progress: object = None
    kill_at: Optional[float] = None
    extra_delay_s: float = 0.0
    running_state: str = "IN_PROGRESS"  # what the job reads while a worker runs it
    requeues: int = 0  # times its worker died and it went back to the queue
    stream: list = field(default_factory=list)  # outputs not yet read through /stream
    output_dropped: bool = False  # job-done was refused (over the payload limit): COMPLETED, no output

    def to_status(self) -> dict:
        now = time.monotonic()
        body = {"id": self.id, "status": self.status}
        if self.started is not None:  # in RunPod ms whatever the time scale, so costs add up as on RunPod
            body["delayTime"] = round((self.started - self.submitted) * 1000 / self.time_scale)
            body["executionTime"] = round(((self.finished or now) - self.started) * 1000 / self.time_scale)
        if self.worker_id:
            body["workerId"] = self.worker_id
        if self.status == "COMPLETED" and not self.output_dropped:
            body["output"] = self.output
        elif self.status in RUNNING_STATES and self.progress is not None:
            body["output"] = self.progress
        if self.error is not None:
            body["error"] = self.error
        return body


class Emulator:
    def __init__(self, workers: int, api_key: Optional[str], faults: Faults, log_dir: Path,
                 endpoint_id: Optional[str] = None, settings: Optional[Settings] = None):
        self.n_workers = workers
        self.settings = settings or Settings()
        self.start_settings = asdict(self.settings)  # what POST /admin/reset goes back to
        self.api_key = api_key
        self.endpoint_id = endpoint_id  # the one endpoint served (404 for others); None: any id
        self.faults = faults
        self.log_dir = log_dir
        self.lock = threading.Condition()
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.stop_signals: dict[str, list[str]] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.polled: set[str] = set()  # workers that have asked for a job: they are up
        self.cancelled: list[str] = []  # jobs a client cancelled while they were queued or running
        self.deleted: dict[str, str] = {}  # job id -> why RunPod no longer keeps it (ttl, retention)
        self.retried = 0  # jobs requeued after their worker died, and /retry calls (health's jobs.retried)
        self.port = 0
        self.closing = False
        # RunPod's REST v2 view of the endpoint these workers serve: its container and its releases.
        self.created_at = _now_iso()
        self.container = {"image": os.environ.get("CVSWEEP_IMAGE", DEFAULT_IMAGE), "env": {}, "args": None,
                          "disk": 20, "ports": [], "registry": None}
        self.endpoint_settings: dict = {"workers": {"min": 0, "max": workers, "idleTimeout": 5},
                                        "scaling": {"type": "QUEUE_DELAY", "value": 4}, "timeout": 600000,
                                        "flashboot": "OFF", "dataCenterIds": [], "networkVolumes": [],
                                        "gpu": {"pools": ["ADA_24"], "count": 1, "excludedTypes": [],
                                                "allowedCudaVersions": [], "minCudaVersion": None}}
        self.releases: list[dict] = [_release(1, [], workers)]  # newest first
        self.stuck_versions: set[int] = set()  # releases the stuck_rollouts fault holds back
        self.worker_versions: dict[str, int] = {}  # the release each worker process started from
        self.retiring: set[str] = set()  # workers being replaced by a newer release: they take no job

    # -- REST v2 (api.runpod.io/v2) -----------------------------------------------------------
    @property
    def endpoint_version(self) -> int:
        return self.releases[0]["version"]

    def v2_endpoint(self, endpoint_id: str) -> dict:
        """``GET /v2/serverless/{id}`` (api-reference-v2/openapi.json ``getEndpoint``): flat, the image at top level."""
        base = f"http://127.0.0.1:{self.port}/v2/{endpoint_id}"
        with self.lock:
            return {"id": endpoint_id, "name": endpoint_id, "type": "QUEUE",
                    "requestUrls": {"run": f"{base}/run", "runSync": f"{base}/runsync",
                                    "status": f"{base}/status/{{job_id}}", "stream": f"{base}/stream/{{job_id}}",
                                    "cancel": f"{base}/cancel/{{job_id}}", "retry": f"{base}/retry/{{job_id}}",
                                    "purgeQueue": f"{base}/purge-queue", "health": f"{base}/health"},
                    **json.loads(json.dumps(self.container)), **json.loads(json.dumps(self.endpoint_settings)),
                    "createdAt": self.created_at}

    def v2_update(self, endpoint_id: str, changes: dict) -> dict:
        """``PATCH /v2/serverless/{id}``: only the fields given change; a changed image or env makes
        a release that rolls out as workers cycle (api-reference-v2/openapi.json ``updateEndpoint``)."""
        with self.lock:
            diff = [{"field": RELEASE_FIELDS[key], "old": self.container[key], "new": value}
                    for key, value in changes.items() if key in RELEASE_FIELDS and self.container[key] != value]
            for key, value in changes.items():
                (self.container if key in self.container else self.endpoint_settings)[key] = value
            if diff:  # the same image again makes no release: the latest one stands
                release = _release(self.endpoint_version + 1, diff, len(self._live_workers()))
                self.releases.insert(0, release)
                if self.faults.take("stuck_rollouts"):
                    self.stuck_versions.add(release["version"])
                self.lock.notify_all()
        return self.v2_endpoint(endpoint_id)

    def v2_releases(self) -> dict:
        """``GET /v2/serverless/{id}/releases`` (``listEndpointReleases``): newest first, and the rollout."""
        with self.lock:
            live = self._live_workers()
            on_latest = sum(self.worker_versions.get(w) == self.endpoint_version for w in live)
            # openapi.json: inProgress while any worker still runs an older version; percent 0 with no workers.
            rollout = {"inProgress": on_latest < len(live), "workersOnLatest": on_latest, "workersTotal": len(live),
                       "percentOnLatest": round(100 * on_latest / len(live)) if live else 0}
            return {"endpointVersion": self.endpoint_version, "rollout": rollout,
                    "releases": json.loads(json.dumps(self.releases))}

    def _live_workers(self) -> list[str]:
        """Workers up, and those being replaced (still of their old release until they restart)."""
        return [w for w, p in self.processes.items() if p.poll() is None or w in self.retiring]

    def _roll_out(self) -> None:
        """Replace each idle worker of an older release; a busy one after its job (the lock is held)."""
        # serverless/endpoints/rolling-releases.mdx "How it works": in-flight workers keep the
        # previous version until they are replaced.
        if self.endpoint_version in self.stuck_versions:
            return
        busy = {j.worker_id for j in self.jobs.values() if j.status in RUNNING_STATES}
        for worker_id, process in self.processes.items():
            if (process.poll() is None and self.worker_versions.get(worker_id) != self.endpoint_version
                    and worker_id not in busy and worker_id not in self.retiring):
                self.retiring.add(worker_id)
                self.polled.discard(worker_id)
                process.kill()  # idle: nothing of a job is lost

    # -- client API ------------------------------------------------------------------------
    def real_seconds(self, rp_seconds: float) -> float:
        """Real seconds that stand for ``rp_seconds`` of RunPod time."""
        return rp_seconds * self.settings.time_scale

    def rp_seconds(self, real: float) -> float:
        """RunPod seconds that ``real`` seconds stand for."""
        return real / self.settings.time_scale

    def submit(self, body: dict, sync: bool = False) -> Job:
        """A new queued job for a /run or /runsync body whose policy was checked."""
        policy = body.get("policy") or {}
        job = Job(uuid.uuid4().hex, body.get("input"),
                  policy.get("executionTimeout", DEFAULT_EXECUTION_TIMEOUT_S * 1000) / 1000,
                  policy.get("ttl", DEFAULT_TTL_S * 1000) / 1000, sync=sync, time_scale=self.settings.time_scale)
        if sync:
            job.id = f"sync-{job.id}"
        with self.lock:
            if self.faults.take("slow_jobs"):
                job.extra_delay_s = self.faults.slow_job_s
            self.jobs[job.id] = job
            self.queue.append(job.id)
            self.lock.notify_all()
        return job

    def wait_final(self, job: Job, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self.lock:
            while job.status not in FINAL_STATES and job.id in self.jobs and time.monotonic() < deadline:
                self.lock.wait(timeout=0.2)

    def cancel(self, job_id: str) -> Optional[Job]:
        # operation-reference.mdx "/cancel" says what a queued or running job answers; for a job
        # that already ended the docs say nothing: it keeps (and answers) its final status.
        with self.lock:
            job = self.jobs.get(job_id)
            if job is not None and job.status not in FINAL_STATES:
                self._end(job, "CANCELLED")
                self.cancelled.append(job_id)
            return job

    def purge(self) -> int:
        with self.lock:
            purged = [self.jobs[job_id] for job_id in self.queue]
            for job in purged:
                self._end(job, "CANCELLED")
            return len(purged)

    def health(self) -> dict:
        """RunPod's health answer. ``--workers 0`` gives all zeros, as an endpoint scaled to zero
        (or with max workers 0) does."""
        with self.lock:
            count = lambda s: sum(j.status == s for j in self.jobs.values())  # noqa: E731
            running = {j.worker_id for j in self.jobs.values() if j.status in RUNNING_STATES}
            alive = [w for w, p in self.processes.items() if p.poll() is None]
            ready = [w for w in alive if w in self.polled]  # up and asking for jobs
            body = {
                "jobs": {"completed": count("COMPLETED"), "failed": count("FAILED") + count("TIMED_OUT"),
                         "inProgress": count("IN_PROGRESS") + count("RUNNING"), "inQueue": count("IN_QUEUE"),
                         "retried": self.retried},
                "workers": {"idle": len([w for w in ready if w not in running]), "initializing": len(alive) - len(ready),
                            "ready": len(ready), "running": len(running), "throttled": 0,
                            "unhealthy": self.faults.unhealthy_workers},
            }
            if self.faults.take("malformed_health"):
                del body["workers"]
            return body

    # -- worker API ------------------------------------------------------------------------
    def take(self, worker_id: str) -> Optional[Job]:
        deadline = time.monotonic() + LONG_POLL_S
        with self.lock:
            if worker_id in self.retiring:
                return None  # being replaced by a newer release
            self.polled.add(worker_id)
            while not self.closing and worker_id not in self.retiring:
                job = self._next_ready_job()
                if job is not None:
                    if self._fault_instead_of_running(job):
                        continue
                    if self.faults.take("running_state_jobs"):
                        job.running_state = "RUNNING"
                    job.status, job.worker_id = job.running_state, worker_id
                    # A requeued job keeps its first start: its executionTimeout counts from there.
                    job.started = job.started if job.started is not None else time.monotonic()
                    if self.faults.take("kill_workers"):
                        job.kill_at = time.monotonic() + self.faults.kill_after_s
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.lock.wait(timeout=min(remaining, 0.2))
            return None

    def _next_ready_job(self) -> Optional[Job]:
        now = time.monotonic()
        for job_id in list(self.queue):
            job = self.jobs[job_id]
            if now - job.submitted >= self.faults.queue_delay_s + job.extra_delay_s:
                self.queue.remove(job_id)
                return job
        return None

    def _fault_instead_of_running(self, job: Job) -> bool:
        for fault, state, error in (
            ("fail_jobs", "FAILED", "injected failure: the job failed before it ran"),
            ("time_out_jobs", "TIMED_OUT", None),
            ("cancel_jobs", "CANCELLED", None),
        ):
            if self.faults.take(fault):
                job.started = time.monotonic()
                self._end(job, state, error=error)
                return True
        return False

    def finish(self, worker_id: str, job_id: str, payload: dict, size: int = 0) -> int:
        """A worker's job-done (a progress update or the result) of ``size`` bytes; the HTTP status it gets."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                # runpod/runpod-python#56: job-done for a job its TTL deleted answers 404.
                return 404
            if job.status in FINAL_STATES or job.worker_id != worker_id:
                return 200  # a late answer to a job that already ended (timed out, cancelled)
            if payload.get("status") == "IN_PROGRESS":
                job.progress = payload.get("output")
                job.stream.append({"output": job.progress})
                return 200
            if payload.get("error") is not None:
                self._end(job, "FAILED", error=payload["error"])
                return 200
            # handler-functions.mdx "Payload limits": 10 MB for /run, 20 MB for /runsync. A result
            # over it is refused at job-done with 400 and the job reads COMPLETED with no output
            # (runpod-workers/worker-comfyui#129 shows the 400, runpod/runpod-python#309 the shape).
            limit = self.settings.sync_payload_limit_bytes if job.sync else self.settings.payload_limit_bytes
            padding, self.faults.pad_results_bytes = self.faults.pad_results_bytes, 0
            if size + padding > limit:
                job.output_dropped = True
                self._end(job, "COMPLETED")
                return 400
            output = payload.get("output")
            if self.faults.take("malformed_results"):
                output = {"unexpected": "this is not a cvsweep result"}
            elif self.faults.take("pruned_results") and isinstance(output, dict):
                output = {**output, "status": "pruned"}
            elif self.faults.take("wrong_fingerprints") and isinstance(output, dict):
                output = {**output, "fingerprint": "0" * 64}
            elif _inline_model(output) and self.faults.take("corrupt_models"):
                output = {**output, "model": {**output["model"], "inline": _corrupted(output["model"]["inline"])}}
            job.output = output
            job.stream.append({"output": output})
            self._end(job, "COMPLETED")
            return 200

    def stops_for(self, worker_id: str) -> list[str]:
        deadline = time.monotonic() + LONG_POLL_S
        with self.lock:
            while not self.stop_signals.get(worker_id) and time.monotonic() < deadline and not self.closing:
                self.lock.wait(timeout=0.2)
            return self.stop_signals.pop(worker_id, [])

    # -- bookkeeping -------------------------------------------------------------------------
    def _end(self, job: Job, status: str, error: object = None) -> None:
        """Move a job to a final state (the lock is held)."""
        if job.id in self.queue:
            self.queue.remove(job.id)
        job.status, job.finished = status, time.monotonic()
        if error is not None:
            job.error = error
        if job.worker_id and status in ("CANCELLED", "TIMED_OUT"):
            self.stop_signals.setdefault(job.worker_id, []).append(job.id)
        self.lock.notify_all()

    def _delete(self, job: Job, why: str) -> None:
        """RunPod no longer keeps the job: every route answers 404 for it (the lock is held)."""
        if job.id in self.queue:
            self.queue.remove(job.id)
        if job.status in RUNNING_STATES and job.worker_id:
            # serverless/workers/handler-functions.mdx: a job stopped by its expiration is
            # cancelled on the worker; the SDK's job-stop channel carries that.
            self.stop_signals.setdefault(job.worker_id, []).append(job.id)
        del self.jobs[job.id]
        self.deleted[job.id] = why
        self.lock.notify_all()

    def _expired(self, job: Job, now: float) -> Optional[str]:
        """Why RunPod would have deleted the job by ``now``, if it would."""
        # send-requests.mdx "TTL vs. execution timeout": the TTL starts at submission and covers
        # queue, run and result; when it runs out the job is deleted regardless of state.
        if now - job.submitted > self.real_seconds(job.ttl_s):
            return f"its ttl ({job.ttl_s:g}s) ran out"
        # send-requests.mdx "Result retention": results are kept 30 minutes after completion
        # (/runsync: 1 minute), separately from the TTL; endpoint-configurations.mdx: then
        # permanently deleted. Every final state counts from when the job ended.
        if job.status in FINAL_STATES and job.finished is not None:
            kept = self.settings.sync_retention_s if job.sync else self.settings.retention_s
            if now - job.finished > self.real_seconds(kept):
                return f"its result was kept {kept:g}s after it ended"
        return None

    def watch(self) -> None:
        """Execution timeouts, TTLs, retention, worker kills, and workers that died."""
        while not self.closing:
            now = time.monotonic()
            with self.lock:
                for job in list(self.jobs.values()):
                    why = self._expired(job, now)
                    if why is not None:
                        self._delete(job, why)
                    elif job.status in RUNNING_STATES:
                        # job-states.mdx: TIMED_OUT when the worker did not report back within the timeout.
                        if now - job.started > self.real_seconds(job.execution_timeout_s):
                            self._end(job, "TIMED_OUT", error=f"ran longer than its executionTimeout ({job.execution_timeout_s:g}s)")
                        elif job.kill_at and now >= job.kill_at:
                            job.kill_at = None
                            self.processes[job.worker_id].kill()
                for worker_id, process in list(self.processes.items()):
                    if process.poll() is None:
                        continue
                    for job in self.jobs.values():
                        if job.worker_id == worker_id and job.status in RUNNING_STATES:
                            self._worker_died(job, f"worker {worker_id} died while running the job "
                                                   f"(exit status {process.returncode})")
                    self.polled.discard(worker_id)
                    self.retiring.discard(worker_id)
                    if not self.closing:
                        self._start(worker_id)  # RunPod replaces lost workers too, from the latest release
                self._roll_out()
            time.sleep(0.1)

    def _worker_died(self, job: Job, why: str) -> None:
        """The job's worker is gone (the lock is held)."""
        # endpoint-configurations.mdx: queue-based endpoints have "guaranteed execution and
        # automatic retries" (and runpod-workers/worker-vllm#29 shows a job run again and again);
        # job-states.mdx: TIMED_OUT when the worker failed to report back. So: back to the queue
        # (same id) up to max_requeues times, then TIMED_OUT; the executionTimeout counts on.
        if job.requeues < self.settings.max_requeues:
            job.requeues += 1
            self.retried += 1
            job.status, job.worker_id, job.progress, job.kill_at = "IN_QUEUE", None, None, None
            self.queue.appendleft(job.id)
            self.lock.notify_all()
        else:
            self._end(job, "TIMED_OUT", error=f"{why}; requeued {job.requeues} times, then given up")
            self.stop_signals.pop(job.worker_id, None)  # nothing runs it: its replacement must not be told

    def retry(self, job_id: str) -> tuple[int, dict]:
        """``POST /retry/{id}``: (HTTP status, answer)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                # operation-reference.mdx "/retry": once results expired, jobs cannot be retried.
                return 404, dict(GONE)
            # operation-reference.mdx "/retry": only FAILED or TIMED_OUT jobs; same id, original
            # input, previous output removed. Undocumented for other states: refused with 400.
            if job.status not in ("FAILED", "TIMED_OUT"):
                return 400, {"error": f"job {job_id} is {job.status}; only FAILED or TIMED_OUT jobs can be retried"}
            # The TTL counts on from the first submission; the retention ends with the job live again.
            job.status, job.started, job.finished, job.worker_id = "IN_QUEUE", None, None, None
            job.output = job.error = job.progress = None
            job.output_dropped, job.stream, job.requeues = False, [], 0
            self.retried += 1
            self.queue.append(job.id)
            self.lock.notify_all()
            return 200, {"id": job.id, "status": job.status}

    def stream(self, job_id: str) -> Optional[dict]:
        """``GET /stream/{id}``: what the job output since the last call (None: no such job)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            # operation-reference.mdx "/stream"; the body is the object the SDK's Job.stream reads.
            chunks, job.stream = job.stream, []
            return {"id": job.id, "status": job.status, "stream": chunks}

    # -- workers -----------------------------------------------------------------------------
    def start_workers(self) -> None:
        for index in range(self.n_workers):
            self._start(f"worker-{index}")

    def _start(self, worker_id: str) -> None:
        """A worker process of the latest release under ``worker_id``."""
        self.worker_versions[worker_id] = self.endpoint_version
        self.processes[worker_id] = self._spawn(worker_id)

    def worker_env(self, worker_id: str) -> dict:
        """The environment a worker of the latest release starts with."""
        base = f"http://127.0.0.1:{self.port}/worker"
        env = {key: value for key, value in os.environ.items() if key not in ("RUNPOD_API_KEY", "RUNPOD_AI_API_KEY")}
        env.update({str(key): str(value) for key, value in (self.container.get("env") or {}).items()})
        env.update(
            CVSWEEP_IMAGE=str(self.container["image"]),  # the image this worker stands for

            RUNPOD_POD_ID=worker_id,
            RUNPOD_WEBHOOK_GET_JOB=f"{base}/job-take/$ID?emulator=1",
            RUNPOD_WEBHOOK_POST_OUTPUT=f"{base}/job-done/$RUNPOD_POD_ID/$ID?emulator=1",
            RUNPOD_WEBHOOK_POST_STREAM=f"{base}/job-stream/$RUNPOD_POD_ID/$ID?emulator=1",
            # No GPU, no internet here: skip the SDK's start-up hardware and network checks.
            RUNPOD_SKIP_GPU_CHECK="true",
            RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
            PYTHONUNBUFFERED="1",
        )
        return env

    def _spawn(self, worker_id: str) -> subprocess.Popen:
        env = self.worker_env(worker_id)
        log = open(self.log_dir / f"{worker_id}.log", "ab")
        return subprocess.Popen([sys.executable, str(HANDLER)], env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_until_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.polled) >= self.n_workers:
                    return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify_all()
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def state(self) -> dict:
        with self.lock:
            return {
                "faults": asdict(self.faults),
                "jobs": {job_id: job.to_status() for job_id, job in self.jobs.items()},
                "cancelled": list(self.cancelled),
                "deleted": dict(self.deleted),
                "settings": asdict(self.settings),
                "workers": {w: {"pid": p.pid, "alive": p.poll() is None, "ready": w in self.polled,
                                "version": self.worker_versions.get(w)}
                            for w, p in self.processes.items()},
            }


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _release(version: int, diff: list, worker_count: int) -> dict:
    """A release as ``listEndpointReleases`` shows it (api-reference-v2/openapi.json)."""
    return {"id": uuid.uuid4().hex[:8], "version": version, "source": "MANUAL", "buildId": None,
            "createdByUserId": None, "workerCount": worker_count, "createdAt": _now_iso(), "diff": diff}


def _inline_model(output) -> bool:
    return isinstance(output, dict) and isinstance(output.get("model"), dict) and "inline" in output["model"]


def _corrupted(inline: str) -> str:
    """The same model (zlib, base64) with one byte changed: it decodes, its sha256 differs."""
    data = bytearray(zlib.decompress(base64.b64decode(inline)))
    data[len(data) // 2] ^= 0xFF
    return base64.b64encode(zlib.compress(bytes(data))).decode("ascii")


def make_handler(emulator: Emulator):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        raw_size = 0  # bytes of the request body being answered

        def log_message(self, *args) -> None:  # quiet: the state is at /admin/state
            pass

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def _route(self, method: str) -> None:
            parts = [p for p in urlparse(self.path).path.split("/") if p]
            body = self._body()
            if parts[:2] == ["v2", "serverless"]:  # before the queue API: "serverless" is no endpoint id
                return self._rest_v2(method, parts[2:], body)
            if parts[:1] == ["v2"]:
                return self._client_api(method, parts[1:], body)
            if parts[:1] == ["v1"]:  # api-reference/overview.mdx: REST v1 is retired
                return self._send(404, V1_RETIRED)
            if parts[:1] == ["worker"]:
                return self._worker_api(method, parts[1:], body)
            if parts[:1] == ["admin"]:
                return self._admin(method, parts[1:], body)
            self._send(404, {"error": "not found"})

        def _refused(self, problems: bool = False) -> bool:
            """A client request's faults and key check, as for every client route: whether it
            was answered (dropped, an injected error, 401) and must go no further; ``problems``:
            answered as REST v2 answers (RFC 9457)."""
            with emulator.lock:
                drop = emulator.faults.take("drop_connections")
                error_status = emulator.faults.http_status if emulator.faults.take("http_errors") else None
            if drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return True
            if error_status:
                if problems:
                    self._problem(error_status, f"injected HTTP {error_status}")
                else:
                    self._send(error_status, {"error": f"injected HTTP {error_status}"})
                return True
            auth = self.headers.get("Authorization", "")
            if emulator.api_key is not None and auth != f"Bearer {emulator.api_key}":
                if problems:
                    self._problem(401, "missing or invalid bearer token")
                else:
                    self._send(401, {"error": "unauthorized"})
                return True
            return False

        def _problem(self, status: int, detail: str, errors: Optional[list] = None) -> None:
            """An RFC 9457 answer, as REST v2 gives every error (api-reference-v2/overview.mdx)."""
            titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                      422: "Unprocessable Entity", 429: "Too Many Requests"}
            body = {"title": titles.get(status, "Error"), "status": status, "detail": detail}
            if errors:
                body["errors"] = errors
            self._send(status, body, content_type="application/problem+json")

        def _rest_v2(self, method: str, parts: list[str], body) -> None:
            if self._refused(problems=True):
                return
            if not parts or (emulator.endpoint_id is not None and parts[0] != emulator.endpoint_id):
                return self._problem(404, "resource not found")
            if method == "GET" and len(parts) == 1:
                return self._send(200, emulator.v2_endpoint(parts[0]))
            if method == "GET" and parts[1:] == ["releases"]:
                return self._send(200, emulator.v2_releases())
            if method == "PATCH" and len(parts) == 1:
                if not isinstance(body, dict):
                    return self._problem(400, "the body must be a JSON object")
                errors = [{"field": key, "message": "unknown field"} for key in sorted(set(body) - V2_FIELDS)]
                if "image" in body and not (isinstance(body["image"], str) and body["image"].strip()):
                    errors.append({"field": "image", "message": "must be a non-empty string"})
                if "env" in body and not isinstance(body["env"], dict):
                    errors.append({"field": "env", "message": "must be an object"})
                if errors:
                    return self._problem(422, "Request validation failed.", errors)
                return self._send(200, emulator.v2_update(parts[0], body))
            self._problem(404, "resource not found")

        def _unknown_endpoint(self, endpoint_id: str) -> bool:
            if emulator.endpoint_id is not None and endpoint_id != emulator.endpoint_id:
                self._send(404, {"error": f"no endpoint {endpoint_id!r}"})
                return True
            return False

        def _client_api(self, method: str, parts: list[str], body) -> None:
            if self._refused() or self._unknown_endpoint(parts[0] if parts else ""):
                return
            route = (method, parts[1] if len(parts) > 1 else "")
            if route in (("POST", "run"), ("POST", "runsync")):
                sync = route[1] == "runsync"
                # operation-reference.mdx: maximum payload size 10 MB for /run, 20 MB for /runsync.
                limit = emulator.settings.sync_payload_limit_bytes if sync else emulator.settings.payload_limit_bytes
                if self.raw_size > limit:
                    return self._send(400, {"error": f"payload of {self.raw_size} bytes is over the {limit}-byte "
                                                     f"limit of /{route[1]}"})
                if not isinstance(body, dict) or "input" not in body:
                    return self._send(400, {"error": "the body must be an object with an 'input'"})
                # send-requests.mdx "Execution policies": the documented bounds of each policy field.
                problem = policy_problem(body.get("policy"))
                if problem:
                    return self._send(400, {"error": problem})
                job = emulator.submit(body, sync=True) if sync else emulator.submit(body)
                if sync:
                    emulator.wait_final(job, seconds=60)
                with emulator.lock:
                    answer = job.to_status() if job.id in emulator.jobs else None
                return self._send(200, answer) if answer else self._send(404, GONE)
            if route == ("GET", "status") and len(parts) == 3:
                with emulator.lock:
                    outage = emulator.faults.http_status if emulator.faults.take("status_errors") else None
                if outage:
                    return self._send(outage, {"error": f"injected HTTP {outage}"})
                # send-requests.mdx "TTL vs. execution timeout": a deleted job's status checks return 404.
                with emulator.lock:
                    job = emulator.jobs.get(parts[2])
                    answer = job.to_status() if job else None
                return self._send(200, answer) if answer else self._send(404, GONE)
            if route == ("POST", "cancel") and len(parts) == 3:
                job = emulator.cancel(parts[2])
                with emulator.lock:
                    answer = job.to_status() if job else None
                return self._send(200, answer) if answer else self._send(404, GONE)
            if route == ("POST", "retry") and len(parts) == 3:
                return self._send(*emulator.retry(parts[2]))
            if route == ("GET", "stream") and len(parts) == 3:
                answer = emulator.stream(parts[2])
                return self._send(200, answer) if answer else self._send(404, GONE)
            if route == ("GET", "health"):
                return self._send(200, emulator.health())
            if route == ("POST", "purge-queue"):
                return self._send(200, {"removed": emulator.purge(), "status": "completed"})
            self._send(404, {"error": f"no route {method} /v2/{'/'.join(parts)}"})

        def _worker_api(self, method: str, parts: list[str], body) -> None:
            if method == "GET" and parts[:1] == ["job-take"] and len(parts) == 2:
                job = emulator.take(parts[1])
                return self._send(200, {"id": job.id, "input": job.input}) if job else self._send(204, None)
            if method == "GET" and parts[:1] == ["job-stop"] and len(parts) == 2:
                stops = emulator.stops_for(parts[1])
                return self._send(200, {"jobsToStop": stops}) if stops else self._send(204, None)
            if method == "POST" and parts[:1] in (["job-done"], ["job-stream"]) and len(parts) == 3:
                status = emulator.finish(parts[1], parts[2], body if isinstance(body, dict) else {"error": "unreadable result"},
                                         self.raw_size)
                answers = {200: {}, 400: {"error": "payload over the size limit"}, 404: GONE}
                return self._send(status, answers[status])
            self._send(404, {"error": "not found"})

        def _admin(self, method: str, parts: list[str], body) -> None:
            if method == "POST" and parts == ["faults"] and isinstance(body, dict):
                known = {f.name for f in fields(Faults)}
                unknown = sorted(set(body) - known)
                if unknown:
                    return self._send(400, {"error": f"unknown faults {unknown}; known: {sorted(known)}"})
                with emulator.lock:
                    for key, value in body.items():
                        setattr(emulator.faults, key, value)
                return self._send(200, asdict(emulator.faults))
            if method == "POST" and parts == ["settings"] and isinstance(body, dict):
                known = {f.name for f in fields(Settings)}
                unknown = sorted(set(body) - known)
                if unknown:
                    return self._send(400, {"error": f"unknown settings {unknown}; known: {sorted(known)}"})
                changed = Settings(**{**asdict(emulator.settings), **body})
                if changed.problem():
                    return self._send(400, {"error": changed.problem()})
                with emulator.lock:
                    emulator.settings = changed
                return self._send(200, asdict(changed))
            if method == "POST" and parts == ["reset"]:
                with emulator.lock:  # faults all off, settings as the emulator was started with
                    emulator.faults.__init__()
                    emulator.settings = Settings(**emulator.start_settings)
                return self._send(200, {"faults": asdict(emulator.faults), "settings": asdict(emulator.settings)})
            if method == "GET" and parts == ["state"]:
                return self._send(200, emulator.state())
            self._send(404, {"error": "not found"})

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            self.raw_size = len(raw)
            try:
                return json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
                return None

        def _send(self, status: int, body, content_type: str = "application/json") -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the peer is gone: a killed worker
                self.close_connection = True

    return Handler


def serve_in_thread(emulator: Emulator) -> ThreadingHTTPServer:
    """The emulator's HTTP API on a free port of 127.0.0.1, served by a thread of this process
    (in-process tests: with ``workers=0`` no worker starts and jobs stay queued).

    Args:
        emulator: The emulator to serve; its ``port`` is set to the port taken.

    Returns:
        The running server: ``shutdown()`` then ``server_close()`` stop it.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(emulator))
    server.daemon_threads = True
    emulator.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--endpoint-id", default=None,
                        help="serve only this endpoint id, 404 for others (default: answer any id)")
    parser.add_argument("--faults", default="{}", help="JSON object of Faults fields to start with")
    parser.add_argument("--log-dir", default=None, help="worker logs (default: a new temporary folder)")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    for setting in fields(Settings):
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(setting.default, bool) else \
            {"type": type(setting.default)}
        parser.add_argument(f"--{setting.name.replace('_', '-')}", default=setting.default, **kind,
                            help=f"(default {setting.default}; POST /admin/settings changes it)")
    args = parser.parse_args(argv)
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    if settings.problem():
        parser.error(settings.problem())

    # Clients must present the key this process was given in RUNPOD_API_KEY (any key if unset).
    api_key = os.environ.get("RUNPOD_API_KEY")
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="cvsweep-emulator-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(args.workers, api_key, Faults(**json.loads(args.faults)), log_dir, args.endpoint_id, settings)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(emulator))
    server.daemon_threads = True
    emulator.port = server.server_address[1]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    emulator.start_workers()
    threading.Thread(target=emulator.watch, daemon=True).start()
    if emulator.wait_until_ready(args.ready_timeout):
        print(f"emulator ready: http://127.0.0.1:{emulator.port}/v2 with {args.workers} workers "
              f"(logs in {log_dir})", flush=True)
    else:
        print(f"emulator: workers not ready after {args.ready_timeout:g}s (logs in {log_dir})", flush=True)
    stop.wait()
    emulator.close()
    server.shutdown()


if __name__ == "__main__":
    main()
