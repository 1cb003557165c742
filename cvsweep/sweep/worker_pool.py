"""Worker processes forked from the sweep process, running its Hydra jobs (see
hydra_plugins/cvsweep_launcher for why). Lives outside hydra_plugins: Hydra re-executes
plugin modules when it scans for plugins. Each worker keeps what its jobs share in its own
active sweep context (cvsweep/sweep/context.py).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn

from cvsweep import compat
from cvsweep.execution.interrupts import install_in_worker
from cvsweep.study.pruning import TrialRef
from cvsweep.sweep import context
from cvsweep.sweep.output_relay import OutputRelay

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0


def can_fork() -> bool:
    """Whether this platform can fork the workers.

    Returns:
        True where the ``fork`` start method exists.
    """
    return "fork" in multiprocessing.get_all_start_methods()


class WorkerPool:
    """Forked worker processes that run the sweep's Hydra jobs, one job at a time each."""

    def __init__(self, n_workers: int, preload: Sequence[str], **sweep: Any):
        """Import ``preload`` (once here instead of in every worker), then fork ``n_workers``
        workers that know ``sweep``: hydra_context, task_function, config."""
        for module in preload:
            importlib.import_module(module)
        # What every job of the sweep shares (Hydra's context, the config, the task function,
        # Hydra's singletons): the workers inherit it at the fork, so a job travels as its
        # overrides, number and trial handle only (the configs hold classes of plugin modules
        # that Hydra loads outside sys.modules, which pickle cannot name).
        self.jobs = {**sweep, "singleton_state": Singleton.get_state()}
        self.n_workers = n_workers
        self.output = OutputRelay()  # workers print through this process (cvsweep/sweep/output_relay.py)
        self.pool = self._fork()
        self.output.start()

    def submit(self, overrides: Sequence[str], job_idx: int, trial: Optional[TrialRef] = None) -> Future:
        """Run one job in a worker.

        Args:
            overrides: The job's overrides.
            job_idx: Its job number.
            trial: How the job reaches its study trial for the pruner (cvsweep/study/pruning.py):
                the worker was forked before the trial was asked. None: it does not.

        Returns:
            A future holding the job's JobReturn.
        """
        try:
            return self.pool.submit(_run_job, list(overrides), job_idx, trial)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the jobs running then have failed with
            # BrokenProcessPool, and the pool takes no more. The sweep goes on with new workers.
            log.warning("a worker process died: starting %d new ones", self.n_workers)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._fork()
            return self.pool.submit(_run_job, list(overrides), job_idx, trial)

    def interrupt(self) -> None:
        """The sweep was interrupted: each worker's running trial cancels its remote job and
        returns (cvsweep/execution/interrupts.py)."""
        for process in compat.pool_processes(self.pool):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _fork(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.n_workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_start_worker, initargs=(os.getpid(), self.output, self.jobs))
        for future in [pool.submit(os.getpid) for _ in range(self.n_workers)]:
            future.result()  # every worker is up before the first job
        return pool


def _run_job(overrides: List[str], job_idx: int, trial: Optional[TrialRef] = None) -> JobReturn:
    """One job, as Hydra's joblib launcher runs it: its own config, folder, logging and Hydra
    state. What travels back is what the sweeper reads (the outcome), not the job's configs."""
    worker = context.active()  # the worker's own, activated when it started
    jobs = worker.jobs
    worker.handles.adopt(job_idx, trial)
    try:
        ret = compat.execute_job(job_idx, overrides, jobs["hydra_context"], jobs["config"], jobs["task_function"],
                                 jobs["singleton_state"])
    finally:
        worker.handles.detach(job_idx)
    value = compat.job_outcome(ret)
    try:
        pickle.dumps(value)
    except Exception:  # an exception pickle cannot carry: keep its type and message
        value = RuntimeError(f"{type(value).__name__}: {value}")
    back = JobReturn(overrides=ret.overrides, working_dir=ret.working_dir, task_name=ret.task_name, status=ret.status)
    back.return_value = value
    return back


def _start_worker(parent_pid: int, output: OutputRelay, jobs: dict) -> None:
    """A worker prints through the sweep process, takes Ctrl-C and SIGTERM from it only, and
    exits with it. Its active sweep context (cvsweep/sweep/context.py; the thread that runs
    this runs its jobs) holds what its jobs share and their trial handles."""
    output.attach_worker()
    install_in_worker()
    context.activate(context.SweepContext(jobs=jobs))
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose sweep process died (killed, crashed) exits instead of waiting forever for
    work; a re-run of the sweep retries its trial (see cvsweep/study/storage.py)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="cvsweep-parent-watch", daemon=True).start()
