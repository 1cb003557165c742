"""Ctrl-C and SIGTERM during a sweep: stop cleanly the first time, at once the second time.

The sweep process (``SweepInterrupts``): the first SIGINT or SIGTERM is recorded; the sweep
starts no more trials, the trials in flight end as failed (``interrupted``), remote jobs are
cancelled at RunPod, the summary of what finished is written and the process exits 130
(SIGINT) or 143 (SIGTERM). While a trial trains in the sweep process itself (a local trial),
the signal also raises ``SweepInterrupted`` there, so training stops now, not at the trial's
end. A second signal (a second or more after the first) exits at once.

A remote sweep's forked worker processes (``install_in_worker``): they ignore SIGINT (a
terminal's Ctrl-C reaches the whole process group; the sweep process decides) and take
SIGTERM, which the sweep process sends them, as "stop": the worker's ``WorkerStop`` is set,
and the RunPod executor (which finds it with ``worker_stop``) cancels its job and returns.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Optional

# A wrapper may deliver one Ctrl-C twice: the terminal signals the whole process group and
# `uv run` without a terminal forwards it too. Only a signal this much later is a second one.
SAME_SIGNAL_S = 1.0
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells report it


class SweepInterrupted(BaseException):
    """Raised into a trial training in the sweep process (BaseException, like
    KeyboardInterrupt: no ``except Exception`` on the way may swallow it)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class SweepInterrupts:
    """Installed by the sweeper around its loop; restores the previous handlers at exit."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.raise_now = False  # a trial is training in this process's main thread
        self.first_at = 0.0
        self._previous: dict = {}

    def __enter__(self) -> "SweepInterrupts":
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> Optional[int]:
        """The exit status for the signal recorded, as shells report it (130 for SIGINT, 143 for
        SIGTERM), or None when none was."""
        return EXIT_CODES.get(self.signum) if self.signum is not None else None

    def _handle(self, signum: int, frame) -> None:
        self.record(signum)

    def record(self, signum: int) -> None:
        """Take ``signum`` as the sweep's stop: the first time, note it (and raise into a trial
        training in this process); a second signal a second or more later exits at once.

        Args:
            signum: The signal received (SIGINT or SIGTERM).

        Raises:
            SweepInterrupted: While ``raise_now`` is set (a trial trains in this thread).
        """
        if self.signum is not None and time.monotonic() - self.first_at < SAME_SIGNAL_S:
            return  # the same Ctrl-C delivered twice (e.g. by `uv run` without a terminal)
        if self.signum is not None:  # the second one: no more waiting
            print(f"\ncvsweep: {signal.Signals(signum).name} again: exiting now", file=sys.stderr, flush=True)
            os._exit(EXIT_CODES[signum])
        self.signum, self.first_at = signum, time.monotonic()
        print(f"\ncvsweep: {signal.Signals(signum).name}: stopping the sweep (cancelling trials in flight; "
              "press Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
        if self.raise_now:
            raise SweepInterrupted(signum)


class WorkerStop:
    """A forked worker's "the sweep was interrupted": an event its SIGTERM handler sets. The
    handler is a method of this object, so the process's signal table is where it is found."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def _handle(self, signum: int, frame) -> None:
        self.event.set()


def install_in_worker() -> WorkerStop:
    """In a forked worker process: ignore SIGINT, take SIGTERM as the sweep's stop.

    Returns:
        The worker's stop, whose event SIGTERM sets.
    """
    stop = WorkerStop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop._handle)
    return stop


def worker_stop() -> threading.Event:
    """The event a remote job waits on between polls: set once this worker process was told to
    stop (SIGTERM from the sweep process).

    Returns:
        The event of the ``WorkerStop`` whose handler takes SIGTERM here; outside a forked
        worker, an event nobody sets (the sweep process stops its own trials by raising).
    """
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner.event if isinstance(owner, WorkerStop) else threading.Event()
