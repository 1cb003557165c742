"""Objective values of a result: what the sweeper optimises, read from train()'s result."""

from __future__ import annotations

import math

from omegaconf import OmegaConf, read_write

from cvsweep.config.objective_table import OBJECTIVES, Objective
from cvsweep.config.schema import ConfigError


def value(result: dict, objective: Objective, health_weight: float) -> float:
    """One objective's value of a completed run.

    Args:
        result: train()'s result (``metrics``, and ``health`` or the objective's other section).
        objective: The objective.
        health_weight: The weight of overall health in ``health`` (the sweep's ``health_weight``).

    Returns:
        The value, as a float.

    Raises:
        ValueError: When the result has no finite value for the objective.
    """
    metrics = result["metrics"]
    if objective == Objective.health:
        raw = (1 - health_weight) * metrics["val_accuracy"] + health_weight * result["health"]["overall_health"]
    else:
        raw = (result.get(OBJECTIVES[objective.value].recorded_in) or {}).get(objective.name)
    if raw is None or not math.isfinite(raw):
        raise ValueError(f"the result has no finite {objective.name}")
    return float(raw)


def epoch_value(update: dict, objective: Objective, health_weight: float) -> float | None:
    """The objective as far as one epoch's report shows it: what a pruner compares at that epoch.

    For ``health``, whose health part is measured once after training, the health part counts
    as 0: ``(1 - health_weight) * val_accuracy`` ranks trials at an epoch exactly as val_accuracy
    does, and a pruned trial's recorded value is a lower bound of what it would have scored.

    Args:
        update: One epoch's report (metric name to value).
        objective: The objective.
        health_weight: The weight of overall health in ``health``.

    Returns:
        The value, or None when the report has no finite value for it, or the objective has none
        per epoch (params, latency_ms, ...).
    """
    metric = OBJECTIVES[objective.value].per_epoch
    raw = update.get(metric) if metric is not None else None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    try:
        raw = float(raw)
    except OverflowError:  # an integer no float can hold, from a worker's report
        return None
    if not math.isfinite(raw):
        return None
    return (1 - health_weight) * raw if objective == Objective.health else raw


def objectives_of(cfg) -> list[Objective]:
    """The primary objective, then any secondary ones (a multi-objective sweep).

    Args:
        cfg: The composed config.

    Returns:
        ``[cfg.objective, *cfg.secondary_objectives]``.
    """
    return [cfg.objective, *cfg.secondary_objectives]


def directions_of(cfg) -> list[str]:
    """The Optuna direction of each objective, in ``objectives_of`` order.

    Args:
        cfg: The composed config.

    Returns:
        ``"minimize"`` or ``"maximize"`` for each objective.
    """
    return [OBJECTIVES[o.value].direction for o in objectives_of(cfg)]


def values(result: dict, cfg) -> list[float]:
    """The values of every objective of a completed run, in ``objectives_of`` order.

    Args:
        result: train()'s result.
        cfg: The composed config (its objectives and ``health_weight``).

    Returns:
        One float per objective.

    Raises:
        ValueError: When the result has no finite value for one of them.
    """
    return [value(result, o, cfg.health_weight) for o in objectives_of(cfg)]


def settle_direction(cfg) -> None:
    """Set ``hydra.sweeper.direction`` from the objectives, or check the one written out.

    Args:
        cfg: The composed config; its direction is filled in when unset.

    Raises:
        ConfigError: When the written direction disagrees with the objectives' directions.
    """
    expected = directions_of(cfg)
    direction = cfg.hydra.sweeper.direction
    if direction is None:
        with read_write(cfg.hydra.sweeper):
            cfg.hydra.sweeper.direction = expected[0] if len(expected) == 1 else expected
        return
    given = [getattr(d, "name", d) for d in direction] if OmegaConf.is_list(direction) else [getattr(direction, "name", direction)]
    if given != expected:
        names = ", ".join(o.name for o in objectives_of(cfg))
        wanted = expected[0] if len(expected) == 1 else f"[{','.join(expected)}]"
        raise ConfigError(
            f"hydra.sweeper.direction={direction if not OmegaConf.is_list(direction) else list(direction)}: "
            f"the objectives ({names}) are to {' and '.join(expected)}; set hydra.sweeper.direction={wanted}"
        )
