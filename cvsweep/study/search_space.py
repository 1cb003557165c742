"""A sweep's search space, read one way by everyone: the sweeper (its distributions), the
checks before the sweep (every value it can reach), the study identity and the summary.

``hydra.sweeper.params`` first, then the command line's overrides, which win: a sweep there
replaces the key's expression, a plain value fixes the key.
"""

from __future__ import annotations

from typing import Callable

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from cvsweep import compat
from cvsweep.config.schema import ConfigError
from cvsweep.config.validate import omegaconf_problem


def search_space(cfg: DictConfig) -> dict[str, str]:
    """The swept parameters, as the sweeper sees them.

    Args:
        cfg: The composed sweep config.

    Returns:
        Key to expression (``choice(8,16)``, ``interval(0.001,0.1)``, or a plain value that
        ``hydra.sweeper.params`` fixes); the command line overrides ``hydra.sweeper.params``.
    """
    space = {str(key): str(value) for key, value in (cfg.hydra.sweeper.params or {}).items()}
    for override in _command_line(cfg):
        if override.is_sweep_override():
            space[override.get_key_element()] = override.input_line.split("=", 1)[1]
        else:
            space.pop(override.get_key_element(), None)
    return space


def sweep_parameters(cfg: DictConfig) -> tuple[dict, dict]:
    """The sweep's Optuna distributions and fixed values, as the Optuna sweeper parses them.

    Args:
        cfg: The composed sweep config.

    Returns:
        ``(distributions, fixed)``: the search space's distributions, and the fixed values,
        the command line's plain ones included (every trial's overrides carry them).
    """
    plain = [o.input_line for o in _command_line(cfg) if not o.is_sweep_override()]
    return compat.optuna_sweep_parameters([f"{key}={value}" for key, value in search_space(cfg).items()] + plain)


def check_search_space(cfg: DictConfig, check_config: Callable[[DictConfig], None]) -> None:
    """Check the config each swept key's values lead to.

    First with every swept key at its first value, then each value of each key on its own.

    Args:
        cfg: The composed sweep config.
        check_config: Checks one config; raises ConfigError.

    Raises:
        ConfigError: Naming the key, its expression and the value that fails.
    """
    parser = OverridesParser.create()
    reachable = {
        key: (expression, _reachable_values(parser.parse_override(f"{key}={expression}")))
        for key, expression in search_space(cfg).items()
    }
    base = OmegaConf.masked_copy(cfg, [key for key in cfg.keys() if key != "hydra"])
    problems = []
    for key, (expression, values) in reachable.items():
        try:
            OmegaConf.update(base, key, values[0], merge=True)
        except Exception as err:  # unknown key or wrong type, from OmegaConf
            problems.append(f"{key}={expression}: {omegaconf_problem(err)}")
    if problems:
        raise ConfigError(*(f"search space: {problem}" for problem in problems))
    check_config(base)
    for key, (expression, values) in reachable.items():
        for value in values[1:]:
            trial_cfg = base.copy()
            try:
                OmegaConf.update(trial_cfg, key, value, merge=True)
                check_config(trial_cfg)
            except ConfigError as err:
                problems += [f"{key}={expression} reaches {key}={value}: {p}" for p in err.problems]
                break
            except Exception as err:  # wrong type, from OmegaConf
                problems.append(f"{key}={expression}: {omegaconf_problem(err)}")
                break
    if problems:
        raise ConfigError(*(f"search space: {problem}" for problem in problems))


def _command_line(cfg: DictConfig) -> list:
    return OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task))


def _reachable_values(override) -> list:
    """Each choice, or the two ends of an interval or range. The Optuna sweeper includes a
    range's stop (range(1, 4) can give 4), so the stop is checked too."""
    if not override.is_sweep_override():
        return [override.value()]
    if override.is_interval_sweep():
        return [override.value().start, override.value().end]
    if override.is_range_sweep() and not override.value().shuffle:
        return [override.value().start, override.value().stop]
    return list(override.sweep_iterator())
