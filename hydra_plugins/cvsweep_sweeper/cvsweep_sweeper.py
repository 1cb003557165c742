"""The Optuna sweeper of hydra-optuna-sweeper, with what cvsweep needs on top.

Registered as ``hydra/sweeper: cvsweep``; it takes exactly the Optuna sweeper's settings.
- A sweep in which no trial completed ends normally, so its summary still gets written.
  (Upstream asks the study for its best trial and crashes when there is none.)
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

# No "from __future__ import annotations" here: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
log = logging.getLogger(__name__)


class CvsweepSweeper(OptunaSweeper):
    def sweep(self, arguments: List[str]) -> None:
        try:
            return super().sweep(arguments)
        except ValueError as err:
            if _any_trial_completed(Path(self.sweeper.config.hydra.sweep.dir)):
                raise
            log.error("No trial of this sweep completed, so there is no best trial (%s)", err)


def _any_trial_completed(sweep_dir: Path) -> bool:
    from cvsweep.jsonio import read_json

    return any(read_json(p).get("status") == "completed" for p in sweep_dir.glob("*/result.json"))


@dataclass
class CvsweepSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.cvsweep_sweeper.cvsweep_sweeper.CvsweepSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="cvsweep", node=CvsweepSweeperConf, provider="cvsweep")
