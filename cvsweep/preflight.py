"""Checks that run before any trial folder exists or any training starts.

A single run checks its config and data. A sweep also checks its search space: every value
a parameter can take (each choice, both ends of a range or interval) is applied to the
config and checked alone, so a search space that reaches a forbidden value fails now, not
in trial 37 of an overnight sweep.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, read_write

from cvsweep import model_size
from cvsweep.data import DataError, load_source
from cvsweep.model import ModelError, conv_output_size
from cvsweep.datasets import REGISTRY
from cvsweep.schema import FOLDER_DATASETS, ConfigError, DataLocation, check_values, omegaconf_problem

log = logging.getLogger("cvsweep.preflight")


def check_run(cfg: DictConfig) -> None:
    _check_values_and_data(cfg)
    _check_executor(cfg)
    _check_output_root(cfg.output_root)


def check_sweep(cfg: DictConfig) -> None:
    """Also settles hydra.sweeper.direction and study_name in ``cfg`` before the sweeper is
    made from it: derived from the objectives and the experiment, or checked against them."""
    _check_executor(cfg)
    _check_output_root(cfg.output_root)
    _settle_direction(cfg)
    _check_search_space(cfg)
    _check_sweeper_settings(cfg.hydra.sweeper)
    _check_storage(cfg.hydra.sweeper)
    _settle_study(cfg)


def _check_data_and_model(cfg: DictConfig) -> None:
    if cfg.dataset.location == DataLocation.worker:  # not here to read: check what the config says
        if cfg.dataset.name in FOLDER_DATASETS:
            try:
                conv_output_size(cfg.model, min(cfg.dataset.image_size))
            except ModelError as err:
                raise ConfigError(str(err)) from err
        return
    try:
        # A download is checked when a trial loads it, not here.
        if cfg.dataset.path is None and REGISTRY[cfg.dataset.name.value].downloads:
            shape = model_size.known_shape(cfg.dataset)  # the size check needs no download
        else:
            source = load_source(cfg.dataset)  # cached: the local trials reuse it
            shape = source.x_train.shape[1:]
            if source.kind == "image":
                conv_output_size(cfg.model, min(shape[0], shape[1]))
        model_size.check(cfg, shape)  # a model over the limits would be refused in every trial
    except (DataError, ModelError) as err:
        raise ConfigError(str(err)) from err


def _check_executor(cfg: DictConfig) -> None:
    if cfg.tensorboard and cfg.executor.name != "local":
        raise ConfigError(f"tensorboard=true: TensorBoard logs are written by executor=local only, not {cfg.executor.name}")
    _check_data_location(cfg)
    if cfg.executor.name == "runpod":
        from cvsweep.runpod_executor import missing_settings

        problems = missing_settings(cfg.executor)
        if problems:
            raise ConfigError(*problems)
        _check_endpoint(cfg.executor)


def _check_data_location(cfg: DictConfig) -> None:
    """Data that lives on the worker can only be trained there."""
    if cfg.dataset.location != DataLocation.worker:
        return
    if cfg.executor.name != "runpod":
        raise ConfigError(f"dataset.location=worker: the data is on the remote worker; executor={cfg.executor.name} "
                          "trains here. Use executor=runpod, or dataset.location=client with a local path")
    if cfg.executor.fallback.name == "local":
        raise ConfigError("executor.fallback=local: a failed trial would train here, but dataset.location=worker "
                          "data is on the worker only; set executor.fallback=none")


# The worker counts of RunPod's health answer ({"jobs": {...}, "workers": {...}}).
WORKER_STATES = ("idle", "initializing", "ready", "running", "throttled", "unhealthy")


def _check_endpoint(executor: DictConfig) -> None:
    """Ask the endpoint's health route, with the trials' client, key and retries, so a wrong
    URL, key or endpoint id, or an endpoint whose every worker fails, stops the sweep now
    instead of failing each of its trials."""
    from cvsweep.runpod_executor import (API_KEY_VARIABLE, ENDPOINT_VARIABLE, RemoteError, RequestFailed,
                                         Unreachable, _scrub, endpoint_health)

    endpoint = f"executor.endpoint_id={executor.endpoint_id}"
    try:
        workers = _worker_counts(endpoint_health(executor))
    except Unreachable as err:
        raise ConfigError(_scrub(f"executor.base_url={executor.base_url}: cannot reach the endpoint: {err}")) from None
    except RequestFailed as err:
        if err.status in (401, 403):
            raise ConfigError(f"{API_KEY_VARIABLE}: the endpoint refused the key (HTTP {err.status}); "
                              f"set {API_KEY_VARIABLE} to a RunPod API key with access to this endpoint") from None
        if err.status == 404:
            raise ConfigError(f"{endpoint}: no such endpoint at {executor.base_url} (HTTP 404); check "
                              f"executor.endpoint_id (or {ENDPOINT_VARIABLE}) and executor.base_url") from None
        raise ConfigError(_scrub(f"{endpoint}: the endpoint's health check failed: {err}")) from None
    except RemoteError as err:
        raise ConfigError(_scrub(f"{endpoint}: a malformed health answer from {executor.base_url}: {err}")) from None
    if workers is None:
        raise ConfigError(f"{endpoint}: a malformed health answer from {executor.base_url}: "
                          "no 'workers' object of counts (is executor.base_url RunPod's API?)")
    if workers["unhealthy"] and not any(workers[state] for state in WORKER_STATES if state != "unhealthy"):
        raise ConfigError(f"{endpoint}: every worker of the endpoint is unhealthy ({workers['unhealthy']}): "
                          "its image fails to start or to serve; see the workers' logs in the RunPod console")
    if not any(workers.values()):
        # Scaled to zero (normal) and max workers 0 (a mistake) look alike here: say it, don't refuse.
        log.warning("%s: no worker is up now; the first trial waits for a cold start (if the endpoint's max "
                    "workers is 0, its jobs wait in the queue until executor.ttl_s)", endpoint)


def _worker_counts(health: dict) -> dict | None:
    """The health answer's worker counts by state (absent states count 0), or None when it has
    no ``workers`` object of non-negative whole numbers."""
    workers = health.get("workers")
    if not isinstance(workers, dict):
        return None
    counts = {state: workers.get(state, 0) for state in WORKER_STATES}
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        return None
    return counts


def _check_output_root(output_root: str) -> None:
    root = Path(output_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output_root={output_root}: cannot create it ({err.strerror})") from err
    if not os.access(root, os.W_OK):
        raise ConfigError(f"output_root={output_root}: not writable")


def _settle_direction(cfg: DictConfig) -> None:
    """The direction follows from the objectives; written out, it must agree with them."""
    from cvsweep.objectives import directions_of, objectives_of

    expected = directions_of(cfg)
    direction = cfg.hydra.sweeper.direction
    if direction is None:
        _set_sweeper(cfg, direction=expected[0] if len(expected) == 1 else expected)
        return
    given = [getattr(d, "name", d) for d in direction] if OmegaConf.is_list(direction) else [getattr(direction, "name", direction)]
    if given != expected:
        names = ", ".join(o.name for o in objectives_of(cfg))
        wanted = expected[0] if len(expected) == 1 else f"[{','.join(expected)}]"
        raise ConfigError(
            f"hydra.sweeper.direction={direction if not OmegaConf.is_list(direction) else list(direction)}: "
            f"the objectives ({names}) are to {' and '.join(expected)}; set hydra.sweeper.direction={wanted}"
        )


def _settle_study(cfg: DictConfig) -> None:
    """Name the study after the experiment unless named explicitly, and refuse a stored study
    that is another experiment (cvsweep/study_identity.py), before any trial exists."""
    import optuna

    from cvsweep.objectives import directions_of
    from cvsweep.study import open_storage
    from cvsweep.study_identity import adopt_or_refuse, default_study_name, identity_of

    sweeper = cfg.hydra.sweeper
    identity = identity_of(cfg)
    if not sweeper.study_name:
        _set_sweeper(cfg, study_name=default_study_name(cfg, identity))
    if not sweeper.storage:  # in memory: a new study every time
        return
    storage = open_storage(sweeper.storage, sweeper.heartbeat_interval, sweeper.grace_period)
    study = optuna.create_study(study_name=sweeper.study_name, storage=storage, directions=directions_of(cfg),
                                load_if_exists=True)
    adopt_or_refuse(study, identity)


def _set_sweeper(cfg: DictConfig, **values) -> None:
    with read_write(cfg.hydra.sweeper):
        for key, value in values.items():
            cfg.hydra.sweeper[key] = value


def _check_sweeper_settings(sweeper: DictConfig) -> None:
    limit = sweeper.max_consecutive_failures
    if not (isinstance(limit, int) and limit >= 1):
        raise ConfigError(f"hydra.sweeper.max_consecutive_failures={limit}: allowed is a whole number >= 1")


def search_space(cfg: DictConfig) -> dict[str, str]:
    """The swept parameters, as the sweeper sees them: hydra.sweeper.params, then the
    command line's overrides, which win: a sweep replaces, a plain value fixes the key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = {str(key): str(value) for key, value in (cfg.hydra.sweeper.params or {}).items()}
    for override in OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task)):
        if override.is_sweep_override():
            space[override.get_key_element()] = override.input_line.split("=", 1)[1]
        else:
            space.pop(override.get_key_element(), None)
    return space


def _check_search_space(cfg: DictConfig) -> None:
    """Check the config each swept key's values lead to: first with every swept key at its
    first value, then each value of each key on its own."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

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
    _check_values_and_data(base)
    for key, (expression, values) in reachable.items():
        for value in values[1:]:
            trial_cfg = base.copy()
            try:
                OmegaConf.update(trial_cfg, key, value, merge=True)
                _check_values_and_data(trial_cfg)
            except ConfigError as err:
                problems += [f"{key}={expression} reaches {key}={value}: {p}" for p in err.problems]
                break
            except Exception as err:  # wrong type, from OmegaConf
                problems.append(f"{key}={expression}: {omegaconf_problem(err)}")
                break
    if problems:
        raise ConfigError(*(f"search space: {problem}" for problem in problems))


def _check_values_and_data(cfg: DictConfig) -> None:
    check_values(cfg)
    _check_data_and_model(cfg)


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


def _check_storage(sweeper: DictConfig) -> None:
    """Open the study's storage now, so a wrong URL, a missing driver or an unreachable
    database fails before any trial; SQLite's folder is created."""
    storage = sweeper.storage
    interval, grace = sweeper.heartbeat_interval, sweeper.grace_period
    if not (isinstance(interval, int) and interval > 0 and isinstance(grace, int) and grace > interval):
        raise ConfigError(
            f"hydra.sweeper.heartbeat_interval={interval}, hydra.sweeper.grace_period={grace}: "
            "allowed are whole seconds with 0 < heartbeat_interval < grace_period")
    if not storage:
        return
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception as err:
        raise ConfigError(f"hydra.sweeper.storage={storage}: not a database URL ({err})") from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    from cvsweep.study import open_storage

    try:
        open_storage(storage, interval, grace)
    except ImportError:  # Optuna's wording hides which driver
        raise ConfigError(
            f"hydra.sweeper.storage={shown}: no driver for {url.drivername} is installed "
            "(for PostgreSQL install cvsweep's 'postgres' extra and write postgresql+psycopg://...)") from None
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"hydra.sweeper.storage={shown}: cannot open it: {reason.replace(storage, shown)}") from None
