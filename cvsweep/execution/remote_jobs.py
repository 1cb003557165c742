"""The remote jobs this machine submitted and has not collected yet, one small file per
(endpoint, fingerprint) under ``$CVSWEEP_CACHE_DIR/remote_jobs`` (default ``~/.cache/cvsweep``).

A trial whose client went away while its job ran (the sweep was killed, the machine rebooted,
contact was lost for longer than the polls' patience) leaves its entry behind. The next trial
of the same config (the retry of the interrupted trial, or a re-run) finds it and collects the
job's result instead of paying to train it again, for as long as RunPod can still answer for
the job: until its TTL runs out (counted from submission) and at most ``RETENTION_S`` after it
ended (``answerable_until``).

An entry is ``{"job_id", "submitted_at", "ttl_s", "execution_timeout_s"}`` plus, once seen,
``started_at`` and ``finished_at`` (seconds since the epoch); an entry written before these
fields existed counts as submitted with RunPod's default TTL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from cvsweep.data.access import cache_root
from cvsweep.jsonio import write_json_atomic

# serverless/endpoints/send-requests.mdx "Result retention": a /run job's result is kept 30
# minutes after completion, then permanently deleted (status answers 404).
RETENTION_S = 30 * 60
# serverless/endpoints/send-requests.mdx "Execution policies": ttl defaults to 24 hours.
DEFAULT_TTL_S = 24 * 3600
# RunPod's job ids: a UUID and a suffix (…-u1), "sync-…" for /runsync; nothing that steers a URL.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def ledger_dir() -> Path:
    """The ledger's folder.

    Returns:
        ``remote_jobs`` under cvsweep's cache.
    """
    return cache_root() / "remote_jobs"


def _entry(endpoint_id: str, fingerprint: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(endpoint_id))
    return ledger_dir() / safe / f"{fingerprint}.json"


def remember(endpoint_id: str, fingerprint: str, job_id: str, submitted_at: float, ttl_s: float,
             execution_timeout_s: float) -> dict:
    """Note a submitted job of this config on this endpoint, until it is collected.

    Args:
        endpoint_id: The endpoint it was sent to.
        fingerprint: The run config's fingerprint.
        job_id: RunPod's id of the job.
        submitted_at: When it was sent (seconds since the epoch).
        ttl_s: The job's policy ttl, in seconds.
        execution_timeout_s: The job's policy executionTimeout, in seconds.

    Returns:
        The entry written (its start and end not yet known).
    """
    entry = {"job_id": job_id, "submitted_at": submitted_at, "ttl_s": ttl_s, "execution_timeout_s": execution_timeout_s,
             "started_at": None, "finished_at": None}
    write_json_atomic(_entry(endpoint_id, fingerprint), entry)
    return entry


def mark(endpoint_id: str, fingerprint: str, **seen: float) -> None:
    """Add what a poll learnt of the job (``started_at``, ``finished_at``) to its entry, if it
    still has one.

    Args:
        endpoint_id: The endpoint.
        fingerprint: The run config's fingerprint.
        **seen: The fields to set (seconds since the epoch).
    """
    entry = recall(endpoint_id, fingerprint)
    if entry is not None:
        write_json_atomic(_entry(endpoint_id, fingerprint), {**entry, **seen})


def recall(endpoint_id: str, fingerprint: str) -> Optional[dict]:
    """The uncollected job of this config on this endpoint, if any.

    Args:
        endpoint_id: The endpoint.
        fingerprint: The run config's fingerprint.

    Returns:
        The entry (see the module's docstring) with every field present (unknown times are
        None, a missing TTL RunPod's default), or None when there is none (an unreadable
        entry, or one whose job id is not RunPod's form, is none).
    """
    try:
        entry = json.loads(_entry(endpoint_id, fingerprint).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("job_id"), str) or not JOB_ID.fullmatch(entry["job_id"]):
        return None
    times = {key: entry.get(key) if _number(entry.get(key)) else None
             for key in ("submitted_at", "started_at", "finished_at", "execution_timeout_s")}
    return {**entry, **times, "ttl_s": entry["ttl_s"] if _number(entry.get("ttl_s")) else DEFAULT_TTL_S}


def answerable_until(entry: dict) -> Optional[float]:
    """Until when RunPod can still answer for the entry's job: its TTL from submission, and
    ``RETENTION_S`` after it ended (or after the latest it could have ended, once it started).

    Args:
        entry: A ledger entry, as ``recall`` returns it.

    Returns:
        Seconds since the epoch, or None when the entry does not say when the job was sent.
    """
    if entry.get("submitted_at") is None:
        return None
    ends = [entry["submitted_at"] + entry["ttl_s"]]
    if entry.get("finished_at") is not None:
        ends.append(entry["finished_at"] + RETENTION_S)
    elif entry.get("started_at") is not None and entry.get("execution_timeout_s") is not None:
        ends.append(entry["started_at"] + entry["execution_timeout_s"] + RETENTION_S)
    return min(ends)


def expiry_reason(entry: dict, now: float) -> str:
    """Why RunPod no longer has the entry's job (it answered 404, or ``answerable_until`` passed).

    Args:
        entry: A ledger entry, as ``recall`` returns it.
        now: The time (seconds since the epoch).

    Returns:
        The reason, naming the setting where the TTL ran out.
    """
    submitted = entry.get("submitted_at")
    if submitted is not None and now >= submitted + entry["ttl_s"]:
        return (f"its TTL ran out (executor.ttl_s={entry['ttl_s']:g} s from submission, over queue, run and "
                "result: RunPod then deletes the job)")
    return f"RunPod keeps a job's result {RETENTION_S // 60} min after it ends, then deletes it"


def forget(endpoint_id: str, fingerprint: str) -> None:
    """Drop the entry of this config on this endpoint (collected, or gone); none, no change.

    Args:
        endpoint_id: The endpoint.
        fingerprint: The run config's fingerprint.
    """
    _entry(endpoint_id, fingerprint).unlink(missing_ok=True)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
