"""One trial: hand the run config to the executor, keep its result in the trial folder, and
give the sweeper a number, or an exception it records as a failed or pruned trial (never NaN)."""

from __future__ import annotations

from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cvsweep.config import objectives
from cvsweep.config.schema import run_config_of
from cvsweep.data.sources import pin_dataset
from cvsweep.execution.executors import create_executor
from cvsweep.jsonio import write_json_atomic, write_text_atomic
from cvsweep.study import constraints
from cvsweep.sweep import context
from cvsweep.training import failures
from cvsweep.training.progress_file import epoch_writer
from cvsweep.training.result import failed_result, is_completed, is_pruned


class TrialFailed(RuntimeError):
    """The trial produced no objective; its result.json says why. ``infeasible``: its
    configuration cannot train (diverged, over its time budget, impossible model), which the
    sweeper records so that the sampler avoids it (cvsweep/study/storage.py)."""

    def __init__(self, message: str, infeasible: bool = False):
        super().__init__(message)
        self.infeasible = infeasible

    def __reduce__(self):  # travels from a forked worker process with its flag
        return TrialFailed, (str(self), self.infeasible)


class TrialPruned(optuna.TrialPruned):
    """The sweep's pruner stopped the trial after an epoch; its result.json says when, and the
    value it had reached."""


def run_trial(cfg: DictConfig) -> float | list[float]:
    hydra = HydraConfig.get()
    run_config = run_config_of(cfg)
    trial_dir = Path(hydra.runtime.output_dir)
    options = {"tensorboard_dir": str(trial_dir / "tensorboard")} if cfg.tensorboard else {}
    options["progress"] = epoch_writer(trial_dir)  # the sweep's display reads it, wherever this runs
    if cfg.artifacts.name != "none":
        options["model_dir"] = str(trial_dir)  # model.keras beside result.json
    prune = context.reporter(cfg, hydra.job.get("num"))  # None: not a sweep that prunes
    if prune is not None:
        options["prune"] = prune  # asked after every epoch (cvsweep/study/pruning.py)
    # Whatever happens, the trial gets a result.json that says why (cvsweep/training/failures.py).
    limits = constraints.limits_of(hydra.sweeper)
    stage = failures.DATA
    try:
        run_config = pin_dataset(run_config)  # the fingerprint covers the data's content
        write_run_config(trial_dir, run_config)
        too_big = _over_max_params(run_config, limits)
        if too_big is not None:
            result = too_big  # cheap: never trained
        else:
            stage = failures.FIT
            result = create_executor(cfg.executor).run(run_config, **options)
    except Exception as err:  # a rule between swept values that preflight cannot see, data
        failure = failures.classify(err, stage)  # that changed since the checks, a fault of ours
        result = failed_result(run_config, failure)
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
    path = write_json_atomic(trial_dir / "result.json", result)  # plots: drawn from it after the run or sweep
    if is_pruned(result):
        raise TrialPruned(f"{result['reason']} (see {path})")
    if not is_completed(result):
        raise TrialFailed(f"{result['reason']} (see {path})", infeasible=bool(result.get("infeasible")))
    values = result["trial"]["objective_values"]
    return values[0] if len(values) == 1 else values


def _over_max_params(run_config: dict, limits: dict):
    """The result of a trial whose model is over hydra.sweeper.constraints.max_params, refused
    before it is built (its size is plain arithmetic); None when it is within it."""
    from cvsweep.config.schema import load_run_config
    from cvsweep.data.sources import load_source
    from cvsweep.models import size

    if "max_params" not in limits:
        return None
    cfg = load_run_config(run_config)
    shape = size.known_shape(cfg.dataset) if cfg.dataset.path is None and _downloads(cfg) else \
        load_source(cfg.dataset).x_train.shape[1:]
    params = size.estimate(cfg, tuple(shape)).params
    if params <= limits["max_params"]:
        return None
    result = failed_result(run_config, failures.Failure(
        failures.CONSTRAINT, f"hydra.sweeper.constraints.max_params={limits['max_params']}: this model has "
        f"{params:,} parameters; refused before training", infeasible=True))
    result["metrics"]["params"] = params
    return result


def _downloads(cfg) -> bool:
    from cvsweep.config.datasets import REGISTRY

    return REGISTRY[cfg.dataset.name.value].downloads


def write_run_config(trial_dir: Path, run_config: dict) -> Path:
    """``run_config.yaml``: the run config exactly as the executor gets it (resolved, data
    pinned), beside Hydra's ``.hydra/``, whose composed config still holds interpolations
    and the executor's settings. It has no executor part, so no secret can reach it."""
    import yaml

    return write_text_atomic(trial_dir / "run_config.yaml", yaml.safe_dump(run_config, sort_keys=False))
