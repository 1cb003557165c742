"""One trial in three steps: ``prepare`` (the typed config, its plain run config, the data's
identity and shape, read once), the executor's ``run``, and ``record`` (the result completed
with what the sweep knows of the trial, kept as the trial folder's result.json). The sweeper
gets a number, or an exception it records as a failed or pruned trial (never NaN)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import optuna
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cvsweep import layout
from cvsweep.config import objectives
from cvsweep.config.datasets import known_shape
from cvsweep.config.schema import run_config_of
from cvsweep.data.source_identity import identify
from cvsweep.data.sources import pinnable, settle_num_classes
from cvsweep.errors import CvsweepError
from cvsweep.execution.executors import create_executor
from cvsweep.execution.prepared import DataIdentity, PreparedTrial
from cvsweep.jsonio import write_json_atomic, write_text_atomic
from cvsweep.models import size
from cvsweep.study import constraints
from cvsweep.study.full_disk import full_disk_of
from cvsweep.sweep import context
from cvsweep.training import failures
from cvsweep.training.progress_file import epoch_writer
from cvsweep.training.result import Result, failed_result, is_completed, is_pruned


class TrialFailed(CvsweepError, RuntimeError):
    """The trial produced no objective; its result.json says why. ``infeasible``: its
    configuration cannot train (diverged, over its time budget, impossible model), which the
    sweeper records so that the sampler avoids it (cvsweep/study/storage.py)."""

    def __init__(self, message: str, infeasible: bool = False):
        super().__init__(message)
        self.infeasible = infeasible

    def __reduce__(self):  # travels from a forked worker process with its flag
        return TrialFailed, (str(self), self.infeasible)


class TrialPruned(CvsweepError, optuna.TrialPruned):
    """The sweep's pruner stopped the trial after an epoch; its result.json says when, and the
    value it had reached."""


def run_trial(cfg: DictConfig) -> float | list[float]:
    """Prepare, run and record the trial of the composed config (inside a Hydra job).

    Args:
        cfg: The composed config of this job.

    Returns:
        The objective's value, or one value per objective.

    Raises:
        TrialPruned: The sweep's pruner stopped it.
        TrialFailed: It produced no objective (its result.json says why).
        OSError: A disk is full (naming the file, where the write named one): no result.json.
    """
    hydra = HydraConfig.get()
    trial_dir = Path(hydra.runtime.output_dir)
    limits = constraints.limits_of(hydra.sweeper)
    prune = context.reporter(cfg, hydra.job.get("num"))  # None: not a sweep that prunes
    result = _prepare_and_run(cfg, trial_dir, limits, prune)
    path = record(result, cfg, trial_dir, limits, prune)
    if is_pruned(result):
        raise TrialPruned(f"{result['reason']} (see {path})")
    if not is_completed(result):
        raise TrialFailed(f"{result['reason']} (see {path})", infeasible=bool(result.get("infeasible")))
    values = result["trial"]["objective_values"]
    return values[0] if len(values) == 1 else values


def prepare(cfg: DictConfig, limits: Optional[dict] = None) -> PreparedTrial:
    """The trial of a composed config, ready for an executor. The data is read here at most
    once: for its sha256 (pinned into the run config, so the fingerprint covers the content)
    and, where ``limits`` has ``max_params``, its shape; an image folder's unset
    ``dataset.num_classes`` is counted from its class folders first. A download, or data on the
    worker, is not read (its shape is the config's and the registry's, ``known_shape``).

    Args:
        cfg: The composed config (typed by the schema).
        limits: The sweep's constraints (cvsweep/study/constraints.py).

    Returns:
        The prepared trial.

    Raises:
        DataError: The data cannot be read or no longer matches a pinned sha256.
    """
    settle_num_classes(cfg.dataset)
    run_config = run_config_of(cfg)
    data = _data_identity(cfg.dataset, needs_shape="max_params" in (limits or {}))
    if data.sha256 is not None:
        run_config = {**run_config, "dataset": {**run_config["dataset"], "sha256": data.sha256}}
    return PreparedTrial(run_config=run_config, config=cfg, data=data)


def _data_identity(dataset, needs_shape: bool) -> DataIdentity:
    pin = pinnable(dataset)
    if not pin and not needs_shape:
        return DataIdentity()
    if not pin:  # a download, or data on the worker: never read here (constraints.check_shape_known)
        return DataIdentity(shape=known_shape(dataset))
    identity = identify(dataset)  # refuses a pinned hash that no longer matches
    return DataIdentity(sha256=identity.sha256, shape=identity.shape)


def _prepare_and_run(cfg: DictConfig, trial_dir: Path, limits: dict, prune) -> Result:
    """The trial's result; whatever happens, one that says why (cvsweep/training/failures.py),
    except a full disk, which ends the sweep (cvsweep/study/full_disk.py)."""
    stage, prepared = failures.DATA, None
    try:
        prepared = prepare(cfg, limits)
        write_run_config(trial_dir, prepared.run_config)
        result = over_max_params(prepared, limits)
        if result is None:  # within the limit: train it
            stage = failures.FIT
            result = create_executor(cfg.executor).run(prepared, **_run_options(cfg, trial_dir, prune))
    except Exception as err:  # a rule between swept values that preflight cannot see, data
        if full_disk_of(err) is not None:  # no trial's fault, and no result.json could be written
            raise
        failure = failures.classify(err, stage)  # that changed since the checks, a fault of ours
        result = failed_result(prepared.run_config if prepared is not None else run_config_of(cfg), failure)
    return result


def _run_options(cfg: DictConfig, trial_dir: Path, prune) -> dict:
    """What the executor is given beside the trial: where its files go, and the pruner."""
    options = {"tensorboard_dir": str(trial_dir / "tensorboard")} if cfg.tensorboard else {}
    options["progress"] = epoch_writer(trial_dir)  # the sweep's display reads it, wherever this runs
    if cfg.artifacts.name != "none":
        options["model_dir"] = str(trial_dir)  # the model file beside the result
    if prune is not None:
        options["prune"] = prune  # asked after every epoch (cvsweep/study/pruning.py)
    return options


def over_max_params(prepared: PreparedTrial, limits: dict) -> Optional[Result]:
    """A trial whose model is over ``hydra.sweeper.constraints.max_params``, refused before it
    is built (its size is plain arithmetic on the prepared shape).

    Args:
        prepared: The prepared trial (its shape known when ``limits`` has ``max_params``).
        limits: The sweep's constraints.

    Returns:
        The refused trial's result (infeasible), or None when it is within the limit.
    """
    if "max_params" not in limits:
        return None
    params = size.estimate(prepared.config, prepared.data.shape).params
    if params <= limits["max_params"]:
        return None
    result = failed_result(prepared.run_config, failures.Failure(
        failures.CONSTRAINT, f"hydra.sweeper.constraints.max_params={limits['max_params']}: this model has "
        f"{params:,} parameters; refused before training", infeasible=True))
    result["metrics"]["params"] = params
    return result


def record(result: Result, cfg: DictConfig, trial_dir: Path, limits: dict, prune=None) -> Path:
    """Complete the result with what the sweep knows of the trial, and keep it.

    Adds ``trial`` (the Hydra job, its overrides and choices, the objectives and, when it
    completed, their values), the pruner's record of a pruned trial and the constraint values
    the sweeper gives Optuna.

    Args:
        result: The executor's result (changed in place).
        cfg: The composed config.
        trial_dir: The trial folder.
        limits: The sweep's constraints.
        prune: The sweep's pruner of this trial, if any.

    Returns:
        The path of the trial's result.json.
    """
    hydra = HydraConfig.get()
    result["trial"] = {
        "job": hydra.job.get("num"),
        "overrides": list(hydra.overrides.task),
        "choices": {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra/")},
        "objectives": [o.name for o in objectives.objectives_of(cfg)],
    }
    if is_completed(result):
        result["trial"]["objective_values"] = objectives.values(result, cfg)
    if is_pruned(result) and prune is not None:
        result["pruned"].update(prune.record())
        result["reason"] = prune.reason()
    if limits and (is_completed(result) or result.get("infeasible")):
        result["constraints"] = constraints.values(result["metrics"], limits)  # the sweeper gives them to Optuna
    return write_json_atomic(layout.result_of(trial_dir), result)  # plots: drawn from it after the run or sweep


def write_run_config(trial_dir: Path, run_config: dict) -> Path:
    """The run config exactly as the executor gets it (resolved, data pinned), beside Hydra's
    ``.hydra/``, whose composed config still holds interpolations and the executor's settings.
    It has no executor part, so no secret can reach it.

    Args:
        trial_dir: The trial folder.
        run_config: The prepared trial's run config.

    Returns:
        The path written (``layout.RUN_CONFIG`` in the trial folder).
    """
    return write_text_atomic(trial_dir / layout.RUN_CONFIG, yaml.safe_dump(run_config, sort_keys=False))
