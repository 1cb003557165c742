"""Objective values of a result: what the sweeper optimises, read from train()'s result."""

from __future__ import annotations

import math

from cvsweep.config.schema import OBJECTIVES, Objective


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


def settle_direction(cfg) -> None:
    """The direction follows from the objectives; written out, it must agree with them."""
    from omegaconf import OmegaConf, read_write

    from cvsweep.config.schema import ConfigError

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
