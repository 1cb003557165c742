"""Starts the queued sweeps, at most ``serve.max_running`` at once, and cancels them.

Each sweep runs as its supervisor process (cvsweep/service/supervise.py) in a session of its
own: a crash of the sweep never touches the server, and the server stopping never stops a
sweep. What the scheduler knows it reads from the sweeps' files, so a restarted server
carries on with the queue it left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from cvsweep.data.access import CONFINED_VARIABLE, ROOTS_VARIABLE, cache_root
from cvsweep.errors import CvsweepError
from cvsweep.service import store
from cvsweep.service.settings import ServeSettings

log = logging.getLogger("cvsweep.service")


class NotCancellable(CvsweepError):
    """A sweep that has already ended."""


def confined_data(settings: ServeSettings) -> dict[str, str]:
    """The environment that confines a sweep's data reads to the data roots (and cvsweep's cache).

    Each file is checked again when it is opened (cvsweep/data/access.py, as on a RunPod
    worker): a path accepted with the request cannot be swapped for a link out of the roots
    while the sweep waits.

    Args:
        settings: The service's settings (its data roots).

    Returns:
        The environment variables to set.
    """
    return {CONFINED_VARIABLE: "1", ROOTS_VARIABLE: os.pathsep.join([*settings.data_roots, str(cache_root())])}


class Runner:
    """Starts queued sweeps as supervisor processes, at most ``max_running`` at once, and cancels them.

    Args:
        settings: The service's settings.
        sweeps: The sweeps' store.
    """

    def __init__(self, settings: ServeSettings, sweeps: store.SweepStore):
        self.settings, self.sweeps = settings, sweeps
        self.lock = threading.Lock()
        self.ended: dict[str, str] = {}  # a sweep that ended stays so: its files are not read again

    def statuses(self) -> dict[str, str]:
        """Every sweep's status; an ended sweep's is remembered and not read again.

        Returns:
            Sweep id to status.
        """
        found = {}
        for sweep_id in self.sweeps.ids():
            found[sweep_id] = self.ended.get(sweep_id) or store.status_of(self.sweeps.sweeps / sweep_id)[0]
            if found[sweep_id] in store.FINAL:
                self.ended[sweep_id] = found[sweep_id]
        return found

    def tick(self) -> None:
        """Start queued sweeps, oldest first, while fewer than max_running run."""
        with self.lock:
            statuses = self.statuses()
            free = self.settings.max_running - sum(s == store.RUNNING for s in statuses.values())
            for sweep_id in [i for i, s in statuses.items() if s == store.QUEUED][:max(0, free)]:
                self._start(self.sweeps.sweeps / sweep_id)

    def _start(self, folder) -> None:
        # "starting" first: a tick in between must not start it twice.
        store.write_state(folder, status=store.STARTING, written_at=time.time())
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **confined_data(self.settings)}
        try:
            process = subprocess.Popen([sys.executable, "-m", store.SUPERVISOR_MODULE, str(folder)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True, env=env)
        except OSError as err:
            store.write_state(folder, status=store.FAILED, finished_at=store.now_iso(),
                              reason=f"could not start the sweep process: {err}")
            return
        store.write_state(folder, status=store.STARTING, written_at=time.time(), supervisor_pid=process.pid)
        log.info("sweep %s started (supervisor pid %d)", folder.name, process.pid)
        # Reap it when it ends (no zombie), then start the next in the queue.
        threading.Thread(target=self._reap, args=(process,), daemon=True, name=f"reap-{folder.name}").start()

    def _reap(self, process: subprocess.Popen) -> None:
        process.wait()
        self.tick()

    def cancel(self, sweep_id: str) -> str:
        """Stop a sweep the way Ctrl-C does, or take it out of the queue.

        Args:
            sweep_id: The sweep's id.

        Returns:
            The sweep's status now.

        Raises:
            NotCancellable: When the sweep has already ended.
        """
        folder = self.sweeps.sweeps / sweep_id
        with self.lock:
            status, state = store.status_of(folder)
            if status in store.FINAL:
                raise NotCancellable(f"sweep {sweep_id} is already {status}")
            store.request_cancel(folder)
            if status == store.QUEUED:
                return store.CANCELLED
            # A supervisor still starting has no signal handler yet (SIGINT would kill it): it
            # reads the cancel file itself (cvsweep/service/supervise.py).
            pid = (state or {}).get("supervisor_pid")
            if (state or {}).get("status") == store.RUNNING and store.supervisor_alive(pid, folder):
                os.kill(pid, signal.SIGINT)
            return store.status_of(folder)[0]
