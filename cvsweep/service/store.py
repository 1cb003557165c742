"""The service's sweeps, as files in each sweep's folder (``<output_root>/sweeps/<id>/``), so a
restarted server finds every earlier and still-running sweep:

- ``service.json``: the request as checked, written once when the sweep is accepted;
- ``service_state.json``: how far it got, written by its supervisor (cvsweep/service/supervise.py);
- ``cancel_requested``: written when a client cancels it;
- ``service.log``: everything the sweep process printed.

The status follows from these and from whether the supervisor process still lives.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.service.requests import CheckedSweep

REQUEST_FILE, STATE_FILE = "service.json", "service_state.json"
CANCEL_FILE, LOG_FILE = "cancel_requested", "service.log"
QUEUED, STARTING, RUNNING = "queued", "starting", "running"
FINISHED, FAILED, CANCELLED = "finished", "failed", "cancelled"
FINAL = (FINISHED, FAILED, CANCELLED)
# An id names a folder: only these characters, so no id can lead out of sweeps/.
ID_PATTERN = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
SUPERVISOR_MODULE = "cvsweep.service.supervise"


def now_iso() -> str:
    """The time now, as UTC ISO 8601 to the second.

    Returns:
        The timestamp.
    """
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SweepStore:
    """The service's sweeps as folders under ``<root>/sweeps``.

    Args:
        root: The service's outputs root.
    """

    def __init__(self, root: Path):
        self.sweeps = root / "sweeps"
        self.known: set[str] = set()  # ids whose request is written (it never changes)

    def new_id(self) -> str:
        """A new sweep id: its creation time and a random suffix.

        Returns:
            The id.
        """
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

    def folder(self, sweep_id: str) -> Optional[Path]:
        """The sweep's folder.

        Args:
            sweep_id: Anything a client sent as an id.

        Returns:
            The folder, or None for an id that is malformed or names no service sweep.
        """
        if not isinstance(sweep_id, str) or not ID_PATTERN.fullmatch(sweep_id):
            return None
        folder = self.sweeps / sweep_id
        return folder if (folder / REQUEST_FILE).is_file() else None

    def create(self, sweep_id: str, client_overrides: list[str], checked: CheckedSweep) -> Path:
        """Create a sweep's folder and write its request.

        Args:
            sweep_id: The new sweep's id.
            client_overrides: The overrides as the client sent them.
            checked: The checked request.

        Returns:
            The sweep's folder.

        Raises:
            FileExistsError: When the folder exists already.
        """
        folder = self.sweeps / sweep_id
        folder.mkdir(parents=True, exist_ok=False)
        write_json_atomic(folder / REQUEST_FILE, {"id": sweep_id, "created_at": now_iso(),
                                                  "client_overrides": client_overrides, **asdict(checked)})
        return folder

    def ids(self) -> list[str]:
        """Every service sweep, oldest first (ids begin with their creation time).

        Returns:
            The ids.
        """
        try:
            names = set(os.listdir(self.sweeps))
        except FileNotFoundError:
            return []
        # Polled twice a second: only a folder not seen before is looked into.
        found = {n for n in names - self.known if ID_PATTERN.fullmatch(n) and (self.sweeps / n / REQUEST_FILE).is_file()}
        self.known = (self.known & names) | found
        return sorted(self.known)


def request_of(folder: Path) -> dict:
    """A sweep's request, as ``SweepStore.create`` wrote it.

    Args:
        folder: The sweep's folder.

    Returns:
        The request.
    """
    return read_json(folder / REQUEST_FILE)


def state_of(folder: Path) -> Optional[dict]:
    """A sweep's state, as its runner and supervisor wrote it.

    Args:
        folder: The sweep's folder.

    Returns:
        The state, or None when none is written or it cannot be read.
    """
    try:
        return read_json(folder / STATE_FILE)
    except (OSError, ValueError):
        return None


def write_state(folder: Path, **state) -> None:
    """Replace a sweep's state.

    Args:
        folder: The sweep's folder.
        **state: The new state.
    """
    write_json_atomic(folder / STATE_FILE, state)


def cancel_requested(folder: Path) -> bool:
    """Whether a client asked to cancel the sweep.

    Args:
        folder: The sweep's folder.

    Returns:
        True when its cancel file exists.
    """
    return (folder / CANCEL_FILE).exists()


def request_cancel(folder: Path) -> None:
    """Ask the sweep to cancel: write its cancel file.

    Args:
        folder: The sweep's folder.
    """
    write_json_atomic(folder / CANCEL_FILE, {"requested_at": now_iso()})


def status_of(folder: Path) -> tuple[str, Optional[dict]]:
    """A sweep's status and state, from its files and whether its supervisor lives.

    Args:
        folder: The sweep's folder.

    Returns:
        ``(status, state)``: queued, running, finished, failed or cancelled; the state, with a
        reason where the status was inferred.
    """
    state = state_of(folder)
    if state is None:
        return (CANCELLED if cancel_requested(folder) else QUEUED), None
    if state.get("status") in FINAL:
        return state["status"], state
    if supervisor_alive(state.get("supervisor_pid"), folder):
        return RUNNING, state
    if cancel_requested(folder):  # cancelled, and its supervisor ended without recording it
        return CANCELLED, {**state, "reason": "cancelled by a client"}
    if state.get("status") == STARTING and time.time() - state.get("written_at", 0) < 30:
        return RUNNING, state  # launched a moment ago; its supervisor has not written yet
    return FAILED, {**state, "reason": "the sweep's supervisor process ended without recording how (killed?)"}


def supervisor_alive(pid, folder: Path) -> bool:
    """Whether ``pid`` is this sweep's supervisor (not another process that took its number).

    Args:
        pid: The recorded supervisor pid (anything).
        folder: The sweep's folder.

    Returns:
        True while it runs.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        if not Path("/proc/self").exists():  # no /proc: the number alone
            try:
                os.kill(pid, 0)
                return True
            except OSError:
                return False
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # ended, not yet reaped
        return False
    return SUPERVISOR_MODULE.encode() in cmdline and str(folder).encode() in cmdline
