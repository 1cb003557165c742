"""The settings of ``hydra/sweeper: cvsweep`` and of its pruners (``hydra/sweeper/pruner``),
as the config dataclasses Hydra's ConfigStore holds; the plugin module registers them
(``register``) each time Hydra loads it."""

# No "from __future__ import annotations": Hydra reads these dataclasses' annotations as types.
import inspect
from dataclasses import dataclass, field, make_dataclass
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import MISSING

from cvsweep.study import constraints, pruning

# Percentile has no default of its own in Optuna; the rest take Optuna's.
PRUNER_SETTINGS = {"percentile": {"percentile": 25.0}}


def _constraints_conf() -> type:
    """hydra.sweeper.constraints: one optional number per row of the constraints table."""
    return make_dataclass("ConstraintsConf", [(name, Optional[float], None) for name in constraints.CONSTRAINTS])


@dataclass
class CvsweepSweeperConf(OptunaSweeperConf):
    """``hydra/sweeper: cvsweep``: upstream Optuna sweeper's settings and cvsweep's own."""

    _target_: str = "hydra_plugins.cvsweep_sweeper.cvsweep_sweeper.CvsweepSweeper"
    # The sampler: seeded TPE (conf/hydra/sweeper/sampler/seeded_tpe.yaml), or any of upstream's
    # (hydra/sweeper/sampler=nsgaii|random|cmaes|motpe|grid|tpe); the pruner, which stops trials
    # that fall behind after an epoch (hydra/sweeper/pruner=auto|none|median|percentile|
    # successive_halving|hyperband): auto, the median pruner where it can act and none where it
    # cannot (conf/hydra/sweeper/pruner/auto.yaml).
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "seeded_tpe"}, {"pruner": pruning.AUTO}])
    pruner: Any = MISSING  # from the defaults above, as the sampler
    # Seconds between a running trial's heartbeats, and how old its last one may get before
    # another process takes the trial's process for dead (see cvsweep/study/storage.py).
    heartbeat_interval: int = 10
    grace_period: int = 60
    # A run stops (exit 1, with the first one's reason) after this many failed trials in a
    # row: a broken setup (offline, wrong endpoint or key) never loops. Failed trials do not
    # count towards n_trials, which counts finished ones.
    max_consecutive_failures: int = 3
    # The whole sweep's wall clock, in seconds (null: none). When it runs out no new trial
    # starts; running trials finish, or with a pruner stop at their next epoch's end.
    timeout_s: Optional[float] = None
    # The most the study's remote trials may cost, in USD (null: no budget; needs a remote
    # executor with executor.price_per_hour). A trial starts only while what the study's
    # trials cost, over every run and process, plus the mean cost of a trial for each one in
    # flight and the new one, stays within it; then the running trials finish and the sweep
    # ends (exit 0).
    budget_usd: Optional[float] = None
    # Limits a trial must meet to be a candidate: null, or
    # hydra.sweeper.constraints.max_params=... (see cvsweep/study/constraints.py); Optuna's
    # samplers learn to avoid what misses them.
    constraints: Any = field(default_factory=lambda: _constraints_conf()())


def _pruner_conf(option: str, target: str) -> type:
    """hydra/sweeper/pruner=<option>: the Optuna pruner's settings, read from its signature
    with Optuna's defaults, so every setting is there and none is listed twice."""
    from hydra.utils import get_class

    fields = [("_target_", str, target)]
    for param in inspect.signature(get_class(target)).parameters.values():
        default = PRUNER_SETTINGS.get(option, {}).get(param.name, param.default)
        kind = type(default) if isinstance(default, (int, float)) and default is not inspect.Parameter.empty else Any
        fields.append((param.name, kind, default if default is not inspect.Parameter.empty else None))
    return make_dataclass(f"{option.title().replace('_', '')}PrunerConf", fields)


def register() -> None:
    """Store ``hydra/sweeper: cvsweep`` and every ``hydra/sweeper/pruner`` option in Hydra's
    ConfigStore."""
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="cvsweep", node=CvsweepSweeperConf, provider="cvsweep")
    for option, target in pruning.PRUNER_TARGETS.items():
        store.store(group="hydra/sweeper/pruner", name=option, node=_pruner_conf(option, target), provider="cvsweep")
