"""executor=local: a trial trains on this machine, in the training process this process keeps
(one at a time; cvsweep/training/process.py)."""

from __future__ import annotations

from typing import Callable, Optional, Union

from cvsweep.execution.prepared import PreparedTrial, prepared_of
from cvsweep.training.process import shared
from cvsweep.training.result import Result

# Called with each epoch's update (epoch, epochs, seconds, metrics), as train() reports it.
ProgressCallback = Callable[[dict], None]
# Asked with the same update whether the sweep's pruner stops the run (cvsweep/study/pruning.py).
PruneCallback = Callable[[dict], bool]


class LocalExecutor:
    """Trains on this machine, in the training process this process keeps, so a trial can be
    killed at its hard time limit or on Ctrl-C, and nothing it does (a read that never returns,
    running out of memory) takes the sweep down with it."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, trial: Union[PreparedTrial, dict], tensorboard_dir: str | None = None,
            progress: Optional[ProgressCallback] = None, model_dir: str | None = None,
            prune: Optional[PruneCallback] = None) -> Result:
        """Train the trial here.

        Args:
            trial: The prepared trial (or its plain run config).
            tensorboard_dir: Where TensorBoard logs go (None: none written).
            progress: Called with each epoch's report.
            model_dir: Where a completed run's model file goes (None: not kept).
            prune: Asked after each epoch whether the run stops there (pruned).

        Returns:
            train()'s result, with ``executed_on.executor`` set to ``local``.
        """
        result = shared().run(prepared_of(trial).run_config, progress=progress, tensorboard_dir=tensorboard_dir,
                              model_dir=model_dir, prune=prune)
        result["executed_on"]["executor"] = "local"
        return result
