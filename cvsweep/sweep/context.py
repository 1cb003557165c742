"""One sweep run's state, in one object: the settings the loop obeys, the trials in flight,
the counts and the failure streak, the deadline, the interrupt (the signal recorded on it),
the pruner's trial handles, a full disk that stopped it and, once the loop has ended, why it
ended early.

Hydra gives its callbacks and its jobs no handle on the sweeper, so the one sweep that is
active in this thread is kept in one ``ContextVar`` (``activate``, ``active``, ``release``):
- in the sweep process, the sweeper activates its context; a job that runs there (Hydra's
  basic launcher) finds its trial for pruning through it (``reporter``), and the end-of-sweep
  hook (cvsweep/sweep/hooks.py) takes the early end from it and releases it;
- in a forked launcher worker, the worker activates a context of its own, holding what every
  job of the sweep shares and the trial handle each job brings (cvsweep/sweep/worker_pool.py).
Nothing else of a sweep lives at module level.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from cvsweep.execution.interrupts import SweepInterrupts
from cvsweep.study.cost import Spend
from cvsweep.study.full_disk import DiskFullStop
from cvsweep.study.pruning import EpochReporter, TrialHandles
from cvsweep.sweep.early_end import EarlyEnd


@dataclass
class LoopSettings:
    """What the loop obeys (hydra.sweeper.*): ``n_trials`` finished trials at most, ``n_jobs``
    at once; it stops after ``max_consecutive_failures`` failures in a row, raises when more
    than ``max_failure_rate`` of the told trials failed, and starts nothing after
    ``timeout_s``, nor once the study's spend plus the trials in flight would pass
    ``budget_usd``. ``prunes``: the jobs report each epoch to their trial."""

    n_trials: int = 1
    n_jobs: int = 1
    max_failure_rate: float = 0.0
    max_consecutive_failures: int = 3
    timeout_s: Optional[float] = None
    prunes: bool = False
    budget_usd: Optional[float] = None


@dataclass
class Running:
    """A trial in flight: its study trial, its job number and the job's overrides."""

    trial: Any
    job: int
    overrides: tuple


class _NoProgress:
    """A loop without a progress display (the tests')."""

    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def started(self, *args: Any) -> None:
        pass

    def finished(self, *args: Any) -> None:
        pass

    def spent(self, *args: Any) -> None:
        pass


class _NoHeartbeat(_NoProgress):
    def add(self, trial: Any) -> None:
        pass

    def remove(self, trial: Any) -> None:
        pass


@dataclass
class SweepContext:
    """One sweep run: built by the sweeper (or a test), read and changed by the loop's steps
    (cvsweep/sweep/loop.py), read by the end-of-sweep hook."""

    settings: LoopSettings = field(default_factory=LoopSettings)
    sweep_dir: Path = Path(".")
    interrupts: SweepInterrupts = field(default_factory=SweepInterrupts)
    handles: TrialHandles = field(default_factory=TrialHandles)  # job -> trial, for the pruner
    heartbeat: Any = field(default_factory=_NoHeartbeat)  # cvsweep/study/storage.py's Heartbeat
    progress: Any = field(default_factory=_NoProgress)  # cvsweep/reporting/progress.py's SweepProgress
    clock: Callable[[], float] = time.time  # what the deadline is measured on
    running: dict[Future, Running] = field(default_factory=dict)
    deadline: Optional[float] = None
    out_of_time: bool = False
    spent: Spend = field(default_factory=Spend)  # what the study's trials cost, as last read
    over_budget: bool = False  # one more trial would pass budget_usd
    told: int = 0  # trials told to the study by this run
    failures: list = field(default_factory=list)  # their failed JobReturns
    streak: list = field(default_factory=list)  # the errors of the failures since the last success
    next_job: int = 0
    changed: bool = True  # a trial ended since the study was last asked
    cancelling: bool = False  # the launcher was told to stop its jobs
    early_end: Optional[EarlyEnd] = None
    full_disk: Optional[DiskFullStop] = None  # a full disk stopped the sweep
    jobs: Optional[dict] = None  # in a forked worker: what every job of the sweep shares

    def stopping(self) -> bool:
        """Whether no new trial may start: interrupted, too many failures in a row, out of
        time or budget, or a full disk.

        Returns:
            True when the sweep is stopping.
        """
        return (self.interrupts.signum is not None or self.out_of_time or self.over_budget
                or len(self.streak) >= self.settings.max_consecutive_failures or self.full_disk is not None)


_ACTIVE: ContextVar[Optional[SweepContext]] = ContextVar("cvsweep_active_sweep", default=None)


def activate(context: SweepContext) -> SweepContext:
    """Make ``context`` the active sweep of this thread (until ``release`` or another one).

    Args:
        context: The sweep's context.

    Returns:
        The same context.
    """
    _ACTIVE.set(context)
    return context


def active() -> Optional[SweepContext]:
    """The active sweep's context in this thread.

    Returns:
        The context, or None outside a sweep.
    """
    return _ACTIVE.get()


def release() -> Optional[SweepContext]:
    """End the active sweep: its context, once (a later sweep in the same process starts clean).

    Returns:
        The context that was active, or None.
    """
    context = _ACTIVE.get()
    _ACTIVE.set(None)
    return context


def reporter(cfg, job: Optional[int]) -> Optional[EpochReporter]:
    """The pruner's ``prune`` hook for job ``job`` of the active sweep.

    Args:
        cfg: The job's config.
        job: The job number (None for a single run).

    Returns:
        The job's ``EpochReporter``, or None (no sweep, no pruner, no trial to report to).
    """
    context = active()
    return context.handles.reporter(cfg, job) if context is not None else None
