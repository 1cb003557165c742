"""Which trial is best: the one rule every part of cvsweep asks.

- One objective: the best value in the study's direction; of equal values, the earlier trial.
- Several objectives: the Pareto front (the trials no other trial beats on every objective,
  Optuna's ``Study.best_trials``), best first by the first objective; of equal values, the
  earlier trial. The first of them is the one trial a sweep names best.
- Only completed trials that meet the study's constraints compete (as Optuna's
  ``Study.best_trial``).

The summary's best (and so ``cvsweep evaluate SWEEP``), ``artifacts=best``, the
trial plots a sweep draws when it ends and the service's view all ask this module. It ranks
anything that has objective values: a study's trials (``FrozenTrial.values``) or the
summary's trial rows (``row["objective_values"]``). "Earlier" is the order given: a study's
trials come in trial-number order (``study_candidates``), a sweep's rows in job order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
MAXIMIZE = "maximize"


def objective_values(trial: Any) -> Sequence[float] | None:
    """A trial's objective values, whatever holds them.

    Args:
        trial: A summary row (``{"objective_values": [...]}``), a study's best as the summary
            records it (``{"values": [...]}``) or an Optuna ``FrozenTrial``.

    Returns:
        The values, one per objective; None for a trial without values.
    """
    if isinstance(trial, Mapping):
        return trial.get("objective_values", trial.get("values"))
    return trial.values


def _direction_name(direction: Any) -> str:
    """``"maximize"`` or ``"minimize"``, from a string or an Optuna ``StudyDirection``."""
    return str(getattr(direction, "name", direction)).lower()


def _signed(values: Sequence[float], directions: Sequence[Any]) -> list[float]:
    """The values turned so that larger is better on every objective."""
    return [v if _direction_name(d) == MAXIMIZE else -v for v, d in zip(values, directions)]


def pareto_front(trials: Sequence[T], directions: Sequence[Any],
                 values: Callable[[T], Sequence[float]] = objective_values) -> list[T]:
    """The trials no other trial beats: at least as good on every objective and better on one.

    Args:
        trials: Completed trials, each with one value per objective.
        directions: ``"maximize"`` or ``"minimize"`` (or Optuna's ``StudyDirection``) per objective.
        values: How to read a trial's objective values.

    Returns:
        The front, in the order given.
    """
    scored = [(t, _signed(values(t), directions)) for t in trials]

    def beaten(mine: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(other, mine)) and any(x > y for x, y in zip(other, mine))
                   for _, other in scored)

    return [t for t, mine in scored if not beaten(mine)]


def ranked(trials: Sequence[T], directions: Sequence[Any],
           values: Callable[[T], Sequence[float]] = objective_values) -> list[T]:
    """The trials that can be named best, best first.

    Args:
        trials: Completed, feasible trials in the order that breaks ties (trial or job order).
        directions: One direction per objective (see ``pareto_front``).
        values: How to read a trial's objective values.

    Returns:
        One objective: every trial, by its value in the direction. Several: the Pareto front,
        by the first objective. Equal values keep the order given.
    """
    if not trials:
        return []
    candidates = pareto_front(trials, directions, values) if len(directions) > 1 else list(trials)
    # sorted() is stable: of equal values, the earlier trial stays first.
    return sorted(candidates, key=lambda t: -_signed(values(t), directions)[0])


def best(trials: Sequence[T], directions: Sequence[Any],
         values: Callable[[T], Sequence[float]] = objective_values) -> T | None:
    """The one trial a sweep names best: the first of ``ranked``.

    Args:
        trials: Completed, feasible trials in trial or job order.
        directions: One direction per objective.
        values: How to read a trial's objective values.

    Returns:
        The best trial, or None when there is none.
    """
    order = ranked(trials, directions, values)
    return order[0] if order else None


def best_trials(trials: Sequence[T], directions: Sequence[Any],
                values: Callable[[T], Sequence[float]] = objective_values) -> list[T]:
    """Every trial that is best: what ``artifacts=best`` keeps and a study's best lists.

    Args:
        trials: Completed, feasible trials in trial or job order.
        directions: One direction per objective.
        values: How to read a trial's objective values.

    Returns:
        One objective: ``[best]``. Several: the whole Pareto front (the same trials as Optuna's
        ``Study.best_trials``), best first. Empty when there is no trial.
    """
    order = ranked(trials, directions, values)
    return order if len(directions) > 1 else order[:1]


def top(trials: Sequence[T], directions: Sequence[Any], k: int,
        values: Callable[[T], Sequence[float]] = objective_values) -> list[T]:
    """The first ``k`` of ``ranked``: the trials whose own plots a sweep draws when it ends.

    Args:
        trials: Completed, feasible trials in trial or job order.
        directions: One direction per objective.
        k: How many.
        values: How to read a trial's objective values.

    Returns:
        At most ``k`` trials, best first.
    """
    return ranked(trials, directions, values)[:k]


def competing_rows(rows: Sequence[dict]) -> list[dict]:
    """The summary rows that compete for best: completed, with objective values, meeting the
    constraints.

    Args:
        rows: Trial rows as the summary builds them (``status``, ``objective_values``,
            ``violates``), in job order.

    Returns:
        Those rows, in the order given.
    """
    return [r for r in rows if r.get("status") == "completed" and r.get("objective_values")
            and not r.get("violates")]


def best_row(rows: Sequence[dict], directions: Sequence[str]) -> dict | None:
    """The row a sweep names best, of every row of it (any status).

    Args:
        rows: Trial rows as the summary builds them, in job order.
        directions: One direction per objective.

    Returns:
        The best competing row (``competing_rows``), or None.
    """
    return best(competing_rows(rows), directions)


def study_candidates(study: Any, completed: Sequence | None = None) -> list:
    """A study's trials that compete for best: completed and meeting its constraints (every
    constraint value <= 0, as Optuna reads them), in trial-number order.

    Args:
        study: An ``optuna.Study``.
        completed: Its completed trials when the caller has read them already, so that it
            ranks exactly the trials it read; else they are read now.

    Returns:
        Those ``FrozenTrial`` objects.
    """
    from optuna.trial import TrialState

    if completed is None:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    feasible = [t for t in completed if t.state == TrialState.COMPLETE
                and all(v <= 0 for v in t.constraints.values())]
    return sorted(feasible, key=lambda t: t.number)


def study_best(study: Any, completed: Sequence | None = None) -> list:
    """A study's best trials by this module's rule (``best_trials``).

    Args:
        study: An ``optuna.Study``.
        completed: Its completed trials when already read (see ``study_candidates``).

    Returns:
        ``FrozenTrial`` objects, best first; empty when none competes.
    """
    return best_trials(study_candidates(study, completed), study.directions, lambda t: t.values)
