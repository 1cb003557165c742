"""Every place cvsweep reaches into a library's private parts, one small adapter each.

Each adapter names the pinned version it was written for (pyproject.toml); tests/unit/test_compat.py
runs each against the installed library and says what changed when an upgrade breaks one. So
an upgrade is adapted here, not at the call sites. Libraries are imported inside each adapter:
importing this module costs nothing (``--help`` never imports TensorFlow).
"""

from __future__ import annotations

from typing import Any, Optional

# -- hydra-optuna-sweeper 1.3.0 ------------------------------------------------------------

def optuna_sweeper_base() -> type:
    """hydra-optuna-sweeper 1.3.0's ``OptunaSweeperImpl`` (private module ``_impl``).

    It is the base of cvsweep's sweeper: it parses ``hydra.sweeper.search_space``
    (``_process_searchspace_config``), reads directions (``_get_directions``) and grid choices
    (``_to_grid_sampler_choices``), and ``setup`` starts the launcher.

    Returns:
        The ``OptunaSweeperImpl`` class.
    """
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    return OptunaSweeperImpl


def optuna_sweep_parameters(overrides: list[str]) -> tuple[dict, dict]:
    """Parse override strings as hydra-optuna-sweeper 1.3.0 does (``_impl.create_params_from_overrides``).

    Args:
        overrides: Override strings such as ``key=choice(1,2)`` or ``key=3``.

    Returns:
        ``(distributions, fixed)``: the Optuna distributions of the swept keys, as Optuna 5.0.0's
        current classes (see ``current_distribution``), and the fixed values as strings.
    """
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    distributions, fixed = create_params_from_overrides(list(overrides))
    return {name: current_distribution(d) for name, d in distributions.items()}, fixed


# -- optuna 5.0.0 ----------------------------------------------------------------------------

def current_distribution(distribution: Any) -> Any:
    """Optuna 5.0.0's current distribution class for a deprecated one.

    hydra-optuna-sweeper 1.3.0 builds deprecated classes (``IntUniformDistribution`` ...), which
    Optuna refuses to mix with current ones
    (``optuna.distributions._convert_old_distribution_to_new_distribution``).

    Args:
        distribution: An Optuna distribution, deprecated or current.

    Returns:
        The equivalent distribution of a current class.
    """
    from optuna.distributions import _convert_old_distribution_to_new_distribution

    return _convert_old_distribution_to_new_distribution(distribution)


def suggest(trial: Any, name: str, distribution: Any) -> Any:
    """Ask ``trial`` for parameter ``name`` of an Optuna distribution object.

    The sweeper's parsed search space holds distribution objects; Optuna 5.0.0's
    ``Trial._suggest(name, distribution)`` takes them, the public ``suggest_*`` methods take bounds.

    Args:
        trial: The Optuna trial.
        name: The parameter's name.
        distribution: Its Optuna distribution.

    Returns:
        The suggested value.
    """
    return trial._suggest(name, distribution)


def trial_id(trial: Any) -> int:
    """The storage's id of a ``Trial`` or ``FrozenTrial`` (Optuna 5.0.0's ``_trial_id``).

    The storage's heartbeat and ``optuna.Trial(study, trial_id)`` take it; ``number`` is per study.

    Args:
        trial: An Optuna ``Trial`` or ``FrozenTrial``.

    Returns:
        The trial's id in its storage.
    """
    return trial._trial_id


# -- hydra-core 1.3.8 (and its OmegaConf 2.3) -----------------------------------------------

def apply_overrides(overrides: list, config: Any) -> None:
    """Apply parsed value overrides to a composed config in place.

    As hydra-core 1.3.8's config loader does for a job
    (``hydra._internal.config_loader_impl.ConfigLoaderImpl._apply_overrides_to_config``).

    Args:
        overrides: Parsed Hydra overrides.
        config: The composed config, changed in place.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(overrides, config)


def overrides_dirname(overrides: list, kv_sep: str, item_sep: str, exclude_keys: list) -> str:
    """``hydra.job.override_dirname`` of parsed overrides, as hydra-core 1.3.8 sets it.

    (``hydra._internal.config_loader_impl.get_overrides_dirname``.)

    Args:
        overrides: Parsed Hydra overrides.
        kv_sep: The separator between a key and its value.
        item_sep: The separator between overrides.
        exclude_keys: Keys left out of the name.

    Returns:
        The folder name part the overrides make.
    """
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return get_overrides_dirname(overrides=overrides, kv_sep=kv_sep, item_sep=item_sep, exclude_keys=exclude_keys)


def job_outcome(ret: Any) -> Any:
    """A finished Hydra job's return value, or the exception it failed with, without raising it.

    (hydra-core 1.3.8's ``JobReturn._return_value``; the public ``return_value`` re-raises.)

    Args:
        ret: The job's ``JobReturn``.

    Returns:
        The task function's return value, or the exception it raised.
    """
    return ret._return_value


def config_node(config: Any, key: str) -> Any:
    """The node under ``key`` of a DictConfig, unresolved.

    (OmegaConf 2.3, from hydra-core 1.3.8: ``DictConfig._get_node``; ``config[key]`` would resolve
    interpolations and raise on ``???``.)

    Args:
        config: A DictConfig.
        key: The key under it.

    Returns:
        The node, or None when there is no such key.
    """
    return config._get_node(key)


# -- hydra-joblib-launcher 1.2.0 ---------------------------------------------------------------

def execute_job(idx: int, overrides: list, hydra_context: Any, config: Any, task_function: Any,
                singleton_state: dict) -> Any:
    """Run one Hydra job in this process as hydra-joblib-launcher 1.2.0 runs it in a worker.

    The job gets its own config, folder, logging and restored Hydra singletons (private
    ``_core.execute_job``).

    Args:
        idx: The job's index in its batch.
        overrides: The job's override strings.
        hydra_context: The sweep's Hydra context.
        config: The sweep's config.
        task_function: The function the job runs.
        singleton_state: Hydra's singletons as the sweep process holds them.

    Returns:
        The job's ``JobReturn``.
    """
    from hydra_plugins.hydra_joblib_launcher._core import execute_job as joblib_execute_job

    return joblib_execute_job(idx, overrides, hydra_context, config, task_function, singleton_state)


# -- runpod 1.12.0 -------------------------------------------------------------------------------

def runpod_client(endpoint: Any) -> Any:
    """The HTTP client of a ``runpod.Endpoint`` (runpod 1.12.0's ``endpoint.rp_client``).

    A ``RunPodClient`` with ``get(path, timeout)`` and ``post(path, data, timeout)`` under
    ``runpod.endpoint_url_base``, for requests the Endpoint API has no method for (cancel with a
    timeout, health) and for one retry policy over all of them.

    Args:
        endpoint: A ``runpod.Endpoint``.

    Returns:
        Its ``RunPodClient``.
    """
    return endpoint.rp_client


def http_session(client: Any) -> Any:
    """The ``requests.Session`` a runpod 1.12.0 ``RunPodClient`` sends through (``rp_session``).

    cvsweep mounts its retry policy on it.

    Args:
        client: A ``RunPodClient`` (see ``runpod_client``).

    Returns:
        Its ``requests.Session``.
    """
    return client.rp_session


# -- tensorflow 2.21.0 ---------------------------------------------------------------------------

def gradient_registry() -> Optional[dict]:
    """TensorFlow 2.21.0's registry of gradient functions by op name.

    (``tensorflow.python.framework.ops._gradient_registry._registry``), where every traced train
    step leaves a ``CustomGradient-<n>`` entry.

    Returns:
        The registry, or None if it is no longer a dict there.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


# -- Python 3.11's concurrent.futures ------------------------------------------------------------

def pool_processes(pool: Any) -> list:
    """The worker processes of a ``ProcessPoolExecutor`` (Python 3.11's ``_processes``).

    With the fork start method every worker is started up front.

    Args:
        pool: A ``ProcessPoolExecutor``.

    Returns:
        Its worker processes.
    """
    return list(pool._processes.values())
