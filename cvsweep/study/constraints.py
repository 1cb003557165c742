"""Study constraints (``hydra.sweeper.constraints``): limits a trial must meet to count as a
candidate (``max_params``, ``min_val_accuracy``: the table ``CONSTRAINTS`` below).

Each constraint is given to Optuna as the trial's constraint value (``Trial.set_constraint``:
feasible when <= 0), which its samplers read: TPE ranks infeasible trials below every feasible
one by how far they miss, NSGA-II prefers feasible ones, and ``Study.best_trial`` picks the
best feasible trial. (Optuna 5 deprecates the samplers' ``constraints_func`` for this API.)
A model over ``max_params`` never trains: its size is known before it is built, so the trial
is refused at once and recorded infeasible, with its constraint value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from cvsweep.config.datasets import known_shape
from cvsweep.config.schema import ConfigError
from cvsweep.jsonio import read_json


@dataclass(frozen=True)
class Constraint:
    """One study constraint: the metric it limits and whether the setting is its max or its min."""

    metric: str  # result["metrics"][metric]
    limit: str  # "max": metric <= setting; "min": metric >= setting
    description: str


# The one table: each setting of hydra.sweeper.constraints (the sweeper's schema is made from it).
CONSTRAINTS = {
    "max_params": Constraint("params", "max", "at most this many model parameters (refused before training)"),
    "min_val_accuracy": Constraint("val_accuracy", "min", "at least this validation accuracy"),
}


def limits_of(sweeper) -> dict[str, float]:
    """The constraints a sweep sets, without the unset ones.

    Args:
        sweeper: The sweep's ``hydra.sweeper`` node (or None).

    Returns:
        Each set constraint's limit; whole numbers as ints (the schema holds floats).
    """
    given = (sweeper or {}).get("constraints") or {}
    return {name: _plain(given[name]) for name in CONSTRAINTS if given.get(name) is not None}


def _plain(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def check_limits(sweeper) -> None:
    """Check the values a sweep gives its constraints.

    Args:
        sweeper: The sweep's ``hydra.sweeper`` node (or None).

    Raises:
        ConfigError: Listing each constraint whose value is not allowed.
    """
    problems = []
    for name, value in limits_of(sweeper).items():
        key = f"hydra.sweeper.constraints.{name}={value}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: allowed is a number, or null (no constraint)")
        elif name == "max_params" and not (float(value).is_integer() and value >= 1):
            problems.append(f"{key}: allowed is a whole number >= 1")
        elif name == "min_val_accuracy" and not 0 <= value <= 1:
            problems.append(f"{key}: allowed is a number in [0, 1]")
    if problems:
        raise ConfigError(*problems)


def check_shape_known(cfg) -> None:
    """``max_params`` judges a trial's model before it runs, from its input shape: the data
    read here, or the shape the config and the registry give (``known_shape``). Data on the
    worker with no known shape (an .npz) cannot be judged here.

    Args:
        cfg: The sweep's config.

    Raises:
        ConfigError: Naming hydra.sweeper.constraints.max_params, the data and the fix.
    """
    from cvsweep.data.sources import pinnable  # NumPy: not at the sweeper plugin's load

    limits, dataset = limits_of(cfg.hydra.sweeper), cfg.dataset
    if "max_params" not in limits or pinnable(dataset) or known_shape(dataset) is not None:
        return
    raise ConfigError(f"hydra.sweeper.constraints.max_params={limits['max_params']}: a trial's model size needs "
                      f"its input shape before it runs, and dataset.path={dataset.path} is read only on the worker "
                      "(dataset.location=worker); set dataset.location=client, or drop the constraint "
                      "(training.max_params limits the model on the worker)")


def values(metrics: dict, limits: dict[str, float]) -> dict[str, float]:
    """Each set constraint's value for a trial with these metrics (<= 0: met).

    Args:
        metrics: The trial's metrics.
        limits: The set constraints (see ``limits_of``).

    Returns:
        The value of each constraint whose metric the trial has.
    """
    found = {}
    for name, limit in limits.items():
        constraint, measured = CONSTRAINTS[name], metrics.get(CONSTRAINTS[name].metric)
        if isinstance(measured, (int, float)) and not isinstance(measured, bool):
            found[name] = float(measured - limit if constraint.limit == "max" else limit - measured)
    return found


def violated(constraint_values: Optional[dict[str, Any]]) -> list[str]:
    """The constraints a trial's recorded values miss.

    Args:
        constraint_values: The trial's recorded constraint values (or None).

    Returns:
        The names of those above 0.
    """
    return [name for name, value in (constraint_values or {}).items() if value > 0]


def give_to_optuna(trial, result_path) -> None:
    """Before the trial is told: its recorded constraint values as Optuna's.

    The values are result.json's ``constraints``; the sampler learns from them where the
    feasible region is. An unreadable result gives none.

    Args:
        trial: The Optuna trial.
        result_path: The trial's result.json.
    """
    try:
        recorded = read_json(result_path).get("constraints") or {}
    except (OSError, ValueError, AttributeError):
        return
    for name, value in recorded.items():
        if name in CONSTRAINTS and isinstance(value, (int, float)) and not isinstance(value, bool):
            trial.set_constraint(name, value)
