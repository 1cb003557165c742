"""What the Hydra sweeper (hydra_plugins/cvsweep_sweeper) builds before the loop runs: the
upstream Optuna sweeper's setup with cached job configs, and the study with its trials'
side (cvsweep/sweep/study_trials.py), opened as the settings say."""

from __future__ import annotations

import functools
import logging
from typing import Optional

import optuna
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cvsweep import compat
from cvsweep.study import storage as studies
from cvsweep.study.full_disk import shown_storage
from cvsweep.study.search_space import sweep_parameters
from cvsweep.sweep.job_configs import SweepConfigCache
from cvsweep.sweep.study_trials import StudyTrials

log = logging.getLogger("hydra_plugins.cvsweep_sweeper.cvsweep_sweeper")


class SweeperImpl(compat.optuna_sweeper_base()):
    """Upstream's sweeper implementation for its settings, search space parsing and launcher;
    its loop is replaced by cvsweep/sweep/loop.py."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Set up as upstream, with a config loader that copies the configs of jobs that differ
        in values only instead of composing each (cvsweep/sweep/job_configs.py).

        Args:
            hydra_context: Hydra's context; its config loader is wrapped.
            task_function: The job's task function.
            config: The sweep's config.
        """
        cached = HydraContext(config_loader=SweepConfigCache(hydra_context.config_loader),
                              callbacks=hydra_context.callbacks)
        super().setup(hydra_context=cached, task_function=task_function, config=config)


def open_study(impl: SweeperImpl, heartbeat: dict) -> tuple[StudyTrials, Optional[object]]:
    """The sweep's study, created or loaded, with the trials of dead processes marked failed.
    The study name and direction were settled by the checks before the sweep
    (cvsweep/sweep/preflight.py).

    Args:
        impl: The set-up sweeper.
        heartbeat: heartbeat_interval and grace_period (seconds).

    Returns:
        The study's trials side, and its storage (None: in memory).
    """
    impl._process_searchspace_config()
    distributions, fixed_params = sweep_parameters(impl.config)
    distributions = {**(impl.search_space_distributions or {}), **distributions}
    _grid(impl, distributions)
    directions = impl._get_directions()
    storage = studies.open_storage(impl.storage, **heartbeat) if impl.storage else None
    study = studies.create_or_load(storage, impl.study_name, sampler=impl.sampler, pruner=impl.pruner,
                                   directions=directions)
    log.info("Study %s in %s: %d trials so far", study.study_name, shown_storage(impl.storage), len(study.trials))
    if storage is not None:
        studies.recover_interrupted(study, heartbeat["grace_period"])
    config = impl.config
    extend = functools.partial(impl.custom_search_space_extender, config) if impl.custom_search_space_extender else None
    # Not for an in-memory study: it is gone after the run, and its artifact copies would stay.
    keep = config.artifacts.name != "none" and impl.storage
    return StudyTrials(study, config.hydra.sweep.dir, directions, distributions, fixed_params, _reseed(config), extend,
                       config.output_root if keep else None, storage_shown=shown_storage(impl.storage)), storage


def _reseed(config: DictConfig):
    """A seeded sampler gets a seed per trial number, so re-runs and parallel processes never
    repeat earlier suggestions."""
    seed = OmegaConf.select(config, "hydra.sweeper.sampler.seed")
    if seed is None:
        return None
    return lambda number: instantiate(config.hydra.sweeper.sampler, seed=studies.trial_seed(seed, number))


def _grid(impl: SweeperImpl, distributions: dict) -> None:
    """As upstream: a grid sampler gets the grid, and never more trials than it holds."""
    if isinstance(impl.sampler, functools.partial) and impl.sampler.func == optuna.samplers.GridSampler:
        grid = {name: impl._to_grid_sampler_choices(d) for name, d in distributions.items()}
        impl.sampler = impl.sampler(grid)
        impl.n_trials = min(impl.n_trials, _product(len(v) for v in grid.values()))


def _product(numbers) -> int:
    result = 1
    for n in numbers:
        result *= n
    return result


