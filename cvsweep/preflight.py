"""Checks that run before any trial folder exists or any training starts.

A single run checks its config and data. A sweep also checks its search space: every value
a parameter can take (each choice, both ends of a range or interval) is applied to the
config and checked alone, so a search space that reaches a forbidden value fails now, not
in trial 37 of an overnight sweep.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cvsweep.data import DataError, load_source
from cvsweep.model import ModelError, conv_output_size
from cvsweep.schema import OBJECTIVE_DIRECTION, ConfigError, DatasetName, check_values, omegaconf_problem

# Sources that need a download: checked when a trial loads them, not here.
_DOWNLOADED = {DatasetName.mnist, DatasetName.fashion_mnist, DatasetName.cifar10, DatasetName.cifar100}


def check_run(cfg: DictConfig) -> None:
    check_values(cfg)
    _check_data_and_model(cfg)
    _check_output_root(cfg.output_root)


def check_sweep(cfg: DictConfig) -> None:
    check_run(cfg)
    _check_direction(cfg)
    _check_search_space(cfg)
    _prepare_storage(cfg.hydra.sweeper.storage)


def _check_data_and_model(cfg: DictConfig) -> None:
    if cfg.dataset.path is None and cfg.dataset.name in _DOWNLOADED:
        return
    try:
        source = load_source(cfg.dataset)  # cached: the local trials reuse it
        height, width = source.x_train.shape[1:3]
        conv_output_size(cfg.model, min(height, width))
    except (DataError, ModelError) as err:
        raise ConfigError(str(err)) from err


def _check_output_root(output_root: str) -> None:
    root = Path(output_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output_root={output_root}: cannot create it ({err.strerror})") from err
    if not os.access(root, os.W_OK):
        raise ConfigError(f"output_root={output_root}: not writable")


def _check_direction(cfg: DictConfig) -> None:
    expected = OBJECTIVE_DIRECTION[cfg.objective]
    direction = cfg.hydra.sweeper.direction
    direction = getattr(direction, "name", direction)
    if direction != expected:
        raise ConfigError(
            f"hydra.sweeper.direction={direction}: objective={cfg.objective.name} is to "
            f"{expected}; set hydra.sweeper.direction={expected}"
        )


def search_space(cfg: DictConfig) -> dict[str, str]:
    """The swept parameters, as the sweeper sees them: hydra.sweeper.params, then the
    command line's own sweep overrides (which win)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = {str(key): str(value) for key, value in (cfg.hydra.sweeper.params or {}).items()}
    for override in OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task)):
        if override.is_sweep_override():
            space[override.get_key_element()] = override.get_value_element_as_str()
    return space


def _check_search_space(cfg: DictConfig) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    base = OmegaConf.masked_copy(cfg, [key for key in cfg.keys() if key != "hydra"])
    problems = []
    for key, expression in search_space(cfg).items():
        override = parser.parse_override(f"{key}={expression}")
        for value in _reachable_values(override):
            trial_cfg = base.copy()
            try:
                OmegaConf.update(trial_cfg, key, value, merge=True)
                check_values(trial_cfg)
                _check_data_and_model(trial_cfg)
            except ConfigError as err:
                problems += [f"{key}={expression} reaches {key}={value}: {p}" for p in err.problems]
                break
            except Exception as err:  # unknown key or wrong type, from OmegaConf
                problems.append(f"{key}={expression}: {omegaconf_problem(err)}")
                break
    if problems:
        raise ConfigError(*(f"search space: {problem}" for problem in problems))


def _reachable_values(override) -> list:
    """Each choice, or the two ends of a range or interval."""
    if not override.is_sweep_override():
        return [override.value()]
    if override.is_interval_sweep():
        interval = override.value()
        return [interval.start, interval.end]
    values = list(override.sweep_iterator())
    return values if len(values) <= 2 or override.is_choice_sweep() else [values[0], values[-1]]


def _prepare_storage(storage) -> None:
    """Optuna's SQLite storage needs its folder to exist."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
