"""Checks that run before any trial folder exists or any training starts.

A single run checks its config and data. A sweep also checks its search space: every value
a parameter can take (each choice, both ends of a range or interval) is applied to the
config and checked alone, so a search space that reaches a forbidden value fails now, not
in trial 37 of an overnight sweep.

Each concern owns its check; this module calls them in order: the executor
(cvsweep/execution/executors.py, cvsweep/execution/runpod.py), the output folder, the direction
(cvsweep/config/objectives.py), the search space (cvsweep/study/search_space.py) with the values, data and
model of each config it reaches (cvsweep/config/schema.py, cvsweep/data/sources.py) and, for executor=local,
whether this machine can run its training.precision (cvsweep/training/precision.py), the sweeper's settings
(a budget only with a priced remote executor) and storage (cvsweep/study/storage.py), the pruner (cvsweep/study/pruning.py), then the study
(cvsweep/study/identity.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from cvsweep.config.schema import ConfigError
from cvsweep.config.validate import check_values
from cvsweep.execution.executors import check_executor
from cvsweep.models.size import check_data_and_model
from cvsweep.training import precision


def check_run(cfg: DictConfig) -> None:
    """Check a single run before it starts: its values and data, executor and output folder.

    Args:
        cfg: The run's config.

    Raises:
        ConfigError: The first problem found, naming the key, the value and the fix.
    """
    _check_values_and_data(cfg)
    check_executor(cfg)
    _check_output_root(cfg.output_root)


def check_sweep(cfg: DictConfig) -> None:
    """Check a sweep before its first trial, in the order the module docstring gives.

    Also settles hydra.sweeper.direction and study_name in ``cfg`` before the sweeper is made
    from it: derived from the objectives and the experiment, or checked against them.

    Args:
        cfg: The sweep's config, changed in place.

    Raises:
        ConfigError: The first problem found, naming the key, the value and the fix.
    """
    from cvsweep.config.objectives import settle_direction
    from cvsweep.study.identity import settle_study
    from cvsweep.study.constraints import check_shape_known
    from cvsweep.study.pruning import check_pruning
    from cvsweep.study.search_space import check_search_space
    from cvsweep.study.storage import check_storage

    check_executor(cfg)
    _check_output_root(cfg.output_root)
    settle_direction(cfg)
    check_search_space(cfg, _check_values_and_data)
    _check_sweeper_settings(cfg.hydra.sweeper)
    check_budget(cfg)
    check_storage(cfg.hydra.sweeper)
    check_shape_known(cfg)
    check_pruning(cfg)
    settle_study(cfg)


def _check_values_and_data(cfg: DictConfig) -> None:
    check_values(cfg)
    check_data_and_model(cfg)
    if cfg.executor.name == "local":  # a worker's hardware is checked where it trains
        precision.check(cfg.training.precision)


def _check_output_root(output_root: str) -> None:
    root = Path(output_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output_root={output_root}: cannot create it ({err.strerror})") from err
    if not os.access(root, os.W_OK):
        raise ConfigError(f"output_root={output_root}: not writable")


def _check_sweeper_settings(sweeper: DictConfig) -> None:
    limit = sweeper.max_consecutive_failures
    if not (isinstance(limit, int) and limit >= 1):
        raise ConfigError(f"hydra.sweeper.max_consecutive_failures={limit}: allowed is a whole number >= 1")
    from cvsweep.study.constraints import check_limits

    n_trials = sweeper.get("n_trials")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"hydra.sweeper.n_trials={n_trials}: allowed is a whole number >= 1")

    check_limits(sweeper)
    timeout = sweeper.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
                                or timeout == float("inf")):
        raise ConfigError(f"hydra.sweeper.timeout_s={timeout}: allowed is a number of seconds > 0, or null (no limit)")


def check_budget(cfg: DictConfig) -> None:
    """hydra.sweeper.budget_usd: null, or a number of dollars > 0 with something to count.

    A budget is refused where it could never stop anything: executor=local costs nothing,
    and a remote executor without executor.price_per_hour prices no trial. Ignoring it there
    would let a user believe the sweep's spend is bounded.

    Args:
        cfg: The sweep's config (hydra.sweeper.budget_usd and the executor).

    Raises:
        ConfigError: The budget is not a positive number, or nothing would count against it.
    """
    budget = cfg.hydra.sweeper.get("budget_usd")
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < float("inf"):
        raise ConfigError("allowed is a number of US dollars > 0, or null (no budget)",
                          key="hydra.sweeper.budget_usd", value=budget)
    executor = cfg.executor
    if executor.name == "local":
        raise ConfigError("executor=local trains on this machine and costs nothing, so no trial would count "
                          "against a budget", key="hydra.sweeper.budget_usd", value=budget,
                          fix="leave it null, or use executor=runpod with executor.price_per_hour")
    if executor.get("price_per_hour") is None:
        raise ConfigError(f"executor={executor.name} has no executor.price_per_hour, so no trial's cost is known",
                          key="hydra.sweeper.budget_usd", value=budget,
                          fix="set executor.price_per_hour (USD per hour of the endpoint's GPU: RunPod's "
                              "'Cost per second' x 3600), or leave the budget null")
