"""A Hydra launcher for trials that mostly wait (remote ones): up to ``n_jobs`` trials at once,
each in a worker process forked from the sweep process, and ``submit`` for one trial at a
time, so that the sweeper starts the next trial as soon as any one ends.

Registered as ``hydra/launcher: cvsweep``. Hydra's joblib launcher, which it replaces for
remote sweeps, starts loky workers as fresh interpreters that import Hydra, cvsweep and the
runpod SDK again (seconds before the first job goes out) and runs batches that wait for their
slowest trial. Here the workers are forked once, when the sweep starts, after the sweep
process has imported the ``preload`` modules, and serve every trial of the sweep
(cvsweep/sweep/worker_pool.py). Each job runs as under the joblib launcher: its own config, folder,
logging and Hydra state.
"""

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from cvsweep.study.pruning import TrialRef

# No "from __future__ import annotations" here: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
log = logging.getLogger(__name__)


class CvsweepLauncher(Launcher):
    """``hydra/launcher: cvsweep``: up to ``n_jobs`` trials at once in forked worker processes.

    Args:
        n_jobs: Trials at once, one worker process each.
        preload: Modules imported once before the workers fork.
    """

    def __init__(self, n_jobs: int, preload: List[str]) -> None:
        self.n_jobs = n_jobs
        self.preload = list(preload)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Import the ``preload`` modules and fork the workers, which inherit the sweep's state.

        Args:
            hydra_context: Hydra's context.
            task_function: The job's task function.
            config: The sweep's config.

        Raises:
            RuntimeError: This platform cannot fork.
        """
        from cvsweep.sweep.worker_pool import WorkerPool, can_fork

        if not can_fork():
            raise RuntimeError("hydra/launcher=cvsweep forks its workers, which this platform cannot; "
                               "use hydra/launcher=joblib")
        setup_globals()
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        # Fork now: the sweep process has no threads and no open database connection yet.
        self.pool = WorkerPool(self.n_jobs, self.preload, hydra_context=hydra_context,
                               task_function=task_function, config=config)
        log.info("Launcher: %d worker processes, sweep output dir: %s", self.n_jobs, config.hydra.sweep.dir)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run a batch of jobs and wait for all of them (Hydra's launcher interface).

        Args:
            job_overrides: One list of overrides per job.
            initial_job_idx: The first job's number.

        Returns:
            The jobs' JobReturns, in order.
        """
        futures = [self.submit(overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
        return [future.result() for future in futures]

    def interrupt(self) -> None:
        """Stop every running trial: remote jobs are cancelled, their trials return failed."""
        self.pool.interrupt()

    def submit(self, overrides: Sequence[str], job_idx: int, trial: Optional[TrialRef] = None) -> Future:
        """Start one job in a free worker (or queue it for the next free one).

        Args:
            overrides: The job's overrides.
            job_idx: Its job number.
            trial: How its job reaches its study trial for the pruner (None: it does not).

        Returns:
            A future holding its JobReturn, whose return_value re-raises what the task raised.
        """
        log.info("\t#%d : %s", job_idx, " ".join(filter_overrides(overrides)))
        return self.pool.submit(overrides, job_idx, trial)


@dataclass
class CvsweepLauncherConf:
    """The settings of ``hydra/launcher: cvsweep``, as Hydra's ConfigStore holds them."""

    _target_: str = "hydra_plugins.cvsweep_launcher.cvsweep_launcher.CvsweepLauncher"
    # Trials at once, one worker process each.
    n_jobs: int = 4
    # Modules the trials need, imported once before the workers fork.
    preload: List[str] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/launcher", name="cvsweep", node=CvsweepLauncherConf, provider="cvsweep")
