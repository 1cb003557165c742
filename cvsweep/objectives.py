"""Objective values of a result: what the sweeper optimises, read from train()'s result."""

from __future__ import annotations

import math

from cvsweep.schema import OBJECTIVES, Objective


def value(result: dict, objective: Objective, health_weight: float) -> float:
    metrics = result["metrics"]
    if objective == Objective.health:
        raw = (1 - health_weight) * metrics["val_accuracy"] + health_weight * result["health"]["overall_health"]
    else:
        raw = metrics.get(objective.name)
    if raw is None or not math.isfinite(raw):
        raise ValueError(f"the result has no finite {objective.name}")
    return float(raw)


def objectives_of(cfg) -> list[Objective]:
    """The primary objective, then any secondary ones (a multi-objective sweep)."""
    return [cfg.objective, *cfg.secondary_objectives]


def directions_of(cfg) -> list[str]:
    return [OBJECTIVES[o.value].direction for o in objectives_of(cfg)]


def values(result: dict, cfg) -> list[float]:
    return [value(result, o, cfg.health_weight) for o in objectives_of(cfg)]
