"""The remote jobs this machine submitted and has not collected yet, one small file per
(endpoint, fingerprint) under ``$CVSWEEP_CACHE_DIR/remote_jobs`` (default ``~/.cache/cvsweep``).

A trial whose client went away while its job ran (the sweep was killed, the machine rebooted,
contact was lost for longer than the polls' patience) leaves its entry behind. The next trial
of the same config (the retry of the interrupted trial, or a re-run) finds it and collects the
job's result instead of paying to train it again, for as long as RunPod keeps the job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from cvsweep.data.access import cache_root
from cvsweep.jsonio import write_json_atomic


def ledger_dir() -> Path:
    """The ledger's folder.

    Returns:
        ``remote_jobs`` under cvsweep's cache.
    """
    return cache_root() / "remote_jobs"


def _entry(endpoint_id: str, fingerprint: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(endpoint_id))
    return ledger_dir() / safe / f"{fingerprint}.json"


def remember(endpoint_id: str, fingerprint: str, job_id: str, submitted_at: float) -> None:
    """Note a submitted job of this config on this endpoint, until it is collected.

    Args:
        endpoint_id: The endpoint it was sent to.
        fingerprint: The run config's fingerprint.
        job_id: RunPod's id of the job.
        submitted_at: When it was sent (seconds since the epoch).
    """
    write_json_atomic(_entry(endpoint_id, fingerprint), {"job_id": job_id, "submitted_at": submitted_at})


def recall(endpoint_id: str, fingerprint: str) -> Optional[dict]:
    """The uncollected job of this config on this endpoint, if any.

    Args:
        endpoint_id: The endpoint.
        fingerprint: The run config's fingerprint.

    Returns:
        ``{"job_id", "submitted_at"}``, or None when there is none (an unreadable entry is none).
    """
    try:
        entry = json.loads(_entry(endpoint_id, fingerprint).read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("job_id"), str) else None


def forget(endpoint_id: str, fingerprint: str) -> None:
    """Drop the entry of this config on this endpoint (collected, or gone); none, no change.

    Args:
        endpoint_id: The endpoint.
        fingerprint: The run config's fingerprint.
    """
    _entry(endpoint_id, fingerprint).unlink(missing_ok=True)
