"""``python -m cvsweep.service.supervise SWEEP_FOLDER``: runs one service sweep, the
``cvsweep -m`` command, and records how it went (cvsweep/service/store.py).

The server starts it in a session of its own, so the sweep outlives a server that stops or
crashes; a restarted server reads what it recorded. SIGINT or SIGTERM (a client's cancel) is
passed on to the sweep as SIGINT: the sweep stops as on Ctrl-C (remote jobs cancelled, the
summary written); a second one, a second or more later, ends it at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cvsweep.service.settings import TOKEN_VARIABLE
from cvsweep.service.store import (
    CANCELLED,
    FAILED,
    FINISHED,
    LOG_FILE,
    RUNNING,
    cancel_requested,
    now_iso,
    request_of,
    write_state,
)


def main(folder: Path) -> int:
    """Run one service sweep as the command, passing a cancel on as Ctrl-C, and record how it ended.

    Args:
        folder: The sweep's folder (its request, state and log).

    Returns:
        0; the sweep's outcome is in its state file.
    """
    request = request_of(folder)
    # The sweep needs the environment's credentials (RUNPOD_API_KEY, ...), never the service's token.
    env = {key: value for key, value in os.environ.items() if key != TOKEN_VARIABLE}
    started_at = now_iso()
    sweep = None
    # A cancel before the sweep process exists ends it as soon as it does.
    pending = []

    def pass_on(signum, frame) -> None:
        if sweep is None:
            pending.append(signum)
        else:
            sweep.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, pass_on)
    signal.signal(signal.SIGTERM, pass_on)
    # The server signals only a supervisor that recorded "running" (its handlers are in place
    # then); a cancel that came while it was starting is the file, read before and after.
    if cancel_requested(folder):
        write_state(folder, status=CANCELLED, supervisor_pid=os.getpid(), started_at=started_at,
                    finished_at=now_iso(), reason="cancelled by a client")
        return 0
    with open(folder / LOG_FILE, "ab", buffering=0) as log:
        sweep = subprocess.Popen([sys.executable, "-m", "cvsweep", "-m", *request["overrides"]],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        write_state(folder, status=RUNNING, supervisor_pid=os.getpid(), sweep_pid=sweep.pid, started_at=started_at)
        if pending or cancel_requested(folder):
            sweep.send_signal(signal.SIGINT)
        code = sweep.wait()
    if code == 0:
        status, reason = FINISHED, None
    elif cancel_requested(folder):
        status, reason = CANCELLED, "cancelled by a client"
    else:
        status, reason = FAILED, _last_words(folder / LOG_FILE) or f"the sweep process exited with status {code}"
    write_state(folder, status=status, supervisor_pid=os.getpid(), sweep_pid=sweep.pid, started_at=started_at,
                finished_at=now_iso(), exit_code=code, reason=reason)
    return 0


def _last_words(log: Path) -> str | None:
    """The sweep's own reason (its last ``cvsweep: ...`` line), as the command prints it."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    said = [line for line in lines if line.startswith("cvsweep: ")]
    return said[-1][len("cvsweep: "):][:2000] if said else None


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
