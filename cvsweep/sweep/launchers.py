"""The loop's launcher seam: start jobs, wait for any to end, stop them. ``HydraLauncher``
adapts Hydra's launchers to it; a test gives the loop a launcher of its own that returns
prepared JobReturns."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Optional, Protocol, Sequence

from cvsweep.execution.interrupts import SweepInterrupts
from cvsweep.study.pruning import TrialHandles

WAIT_S = 0.5  # how long a wait lasts at most, so that a signal is acted on while every trial runs


class Launcher(Protocol):
    """What the loop needs of a launcher: start jobs, wait for any to end, stop them."""

    def start(self, overrides: Sequence[tuple], first_job: int) -> list[Future]:
        """Start one job per overrides, numbered from ``first_job``.

        Args:
            overrides: One tuple of Hydra overrides per job.
            first_job: The first job's number.

        Returns:
            One future per job, holding its JobReturn.

        Raises:
            SweepInterrupted: A job training in this thread was stopped.
        """

    def wait(self, futures: Sequence[Future]) -> set[Future]:
        """Wait for jobs to end.

        Args:
            futures: The jobs in flight.

        Returns:
            Those that are done: at least one, unless a short wait passed.
        """

    def interrupt(self) -> None:
        """Stop every running job: they return soon, failed."""


class HydraLauncher:
    """A Hydra launcher as the loop's launcher. One that can submit a single job (cvsweep's)
    starts each job at once, with the handle of its trial for the pruner; any other runs the
    batch now, in this process, with Ctrl-C raising into the training."""

    def __init__(self, launcher: Any, interrupts: SweepInterrupts, handles: TrialHandles,
                 storage: Optional[str]) -> None:
        self.launcher, self.interrupts, self.handles, self.storage = launcher, interrupts, handles, storage

    def start(self, overrides: Sequence[tuple], first_job: int) -> list[Future]:
        """Start one job per overrides, numbered from ``first_job`` (see ``Launcher.start``).

        Args:
            overrides: One tuple of Hydra overrides per job.
            first_job: The first job's number.

        Returns:
            One future per job, holding its JobReturn.

        Raises:
            SweepInterrupted: A job training in this thread was stopped.
        """
        if not overrides:
            return []
        if hasattr(self.launcher, "submit"):
            return [self.launcher.submit(o, first_job + i, self.handles.portable(first_job + i, self.storage))
                    for i, o in enumerate(overrides)]
        self.interrupts.raise_now = True  # so Ctrl-C stops the training, not only the sweep
        try:
            returns = self.launcher.launch(list(overrides), initial_job_idx=first_job)
        finally:
            self.interrupts.raise_now = False
        return [_done(ret) for ret in returns]

    def wait(self, futures: Sequence[Future]) -> set[Future]:
        """Wait up to ``WAIT_S`` for jobs to end (see ``Launcher.wait``).

        Args:
            futures: The jobs in flight.

        Returns:
            Those that are done.
        """
        return wait(futures, timeout=WAIT_S, return_when=FIRST_COMPLETED)[0]

    def interrupt(self) -> None:
        """See ``Launcher.interrupt``: its workers cancel their remote jobs and return."""
        if hasattr(self.launcher, "interrupt"):
            self.launcher.interrupt()


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
