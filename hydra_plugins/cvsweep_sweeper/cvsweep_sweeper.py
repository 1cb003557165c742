"""``hydra/sweeper: cvsweep``: the Optuna sweeper of hydra-optuna-sweeper, its loop replaced
by cvsweep's (cvsweep/sweep/loop.py: n_trials counts finished trials, failures in a row stop
it, Ctrl-C and timeout_s end it with its summary, trials can be pruned), its study shared with
other sweep processes and surviving crashes (cvsweep/study/storage.py). Its settings are
cvsweep/sweep/sweeper_conf.py's, registered here.
"""

from typing import Any, List, Optional

import optuna
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

from cvsweep.reporting.progress import SweepProgress
from cvsweep.study import pruning
from cvsweep.study.storage import Heartbeat
from cvsweep.sweep import context, sweeper_conf
from cvsweep.sweep.launchers import HydraLauncher
from cvsweep.sweep.loop import run_sweep
from cvsweep.sweep.sweeper import SweeperImpl, open_study

# No "from __future__ import annotations" here: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.


class CvsweepSweeper(OptunaSweeper):
    """``hydra/sweeper: cvsweep``: builds the sweep's context and runs cvsweep's loop."""

    def __init__(self, heartbeat_interval: int, grace_period: int, max_consecutive_failures: int,
                 pruner: Optional[optuna.pruners.BasePruner] = None, timeout_s: Optional[float] = None,
                 constraints: Any = None, budget_usd: Optional[float] = None, **settings: Any) -> None:
        # upstream's __init__ builds upstream's loop
        self.sweeper = SweeperImpl(**settings)
        self.sweeper.pruner = pruner if pruning.prunes(pruner) else None
        self.heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
        self.limits = {"max_consecutive_failures": max_consecutive_failures, "timeout_s": timeout_s,
                       "budget_usd": budget_usd}

    def sweep(self, arguments: List[str]) -> None:
        """Open the study, run the loop over the sweep's context (the active one, where the
        end-of-sweep hook finds why it ended early), then write optimization_results.yaml.

        Args:
            arguments: Hydra's sweep overrides, unused: the search space is read from the
                composed config (cvsweep/study/search_space.py).
        """
        impl = self.sweeper
        trials, storage = open_study(impl, self.heartbeat)
        settings = context.LoopSettings(impl.n_trials, impl.n_jobs, impl.max_failure_rate,
                                        prunes=impl.pruner is not None, **self.limits)
        ctx = context.activate(context.SweepContext(
            settings, trials.sweep_dir, heartbeat=Heartbeat(storage, self.heartbeat["heartbeat_interval"]),
            progress=SweepProgress.for_sweep(impl.config, impl.n_trials, trials.n_finished())))
        run_sweep(ctx, trials, HydraLauncher(impl.launcher, ctx.interrupts, ctx.handles, impl.storage))
        trials.save_results()


sweeper_conf.register()
