"""Executors: where a trial's training runs. Each takes the resolved run config (plain data)
and returns the result of ``train`` on it, with ``executed_on.executor`` set."""

from __future__ import annotations

import importlib
from typing import Callable, Optional, Protocol

from cvsweep.training.result import Result

# Called with each epoch's update (epoch, epochs, seconds, metrics), as train() reports it.
ProgressCallback = Callable[[dict], None]
# Asked with the same update whether the sweep's pruner stops the run (cvsweep/study/pruning.py).
PruneCallback = Callable[[dict], bool]


class Executor(Protocol):
    def run(self, run_config: dict, tensorboard_dir: str | None = None,
            progress: Optional[ProgressCallback] = None, model_dir: str | None = None,
            prune: Optional[PruneCallback] = None) -> Result:
        """``model_dir``: where a completed run's model.keras goes (None: not kept). A run that
        ``prune`` stops comes back with status pruned and what it trained."""


class LocalExecutor:
    """Trains on this machine, in the training process this process keeps (one at a time;
    cvsweep/training/process.py), so a trial can be killed at its hard time limit or on
    Ctrl-C, and nothing it does (a read that never returns, running out of memory) takes the
    sweep down with it."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, run_config: dict, tensorboard_dir: str | None = None,
            progress: Optional[ProgressCallback] = None, model_dir: str | None = None,
            prune: Optional[PruneCallback] = None) -> Result:
        from cvsweep.training.process import shared

        result = shared().run(run_config, progress=progress, tensorboard_dir=tensorboard_dir, model_dir=model_dir,
                              prune=prune)
        result["executed_on"]["executor"] = "local"
        return result


# Imported on use: the runpod client's libraries load only for remote trials.
EXECUTORS = {"local": "cvsweep.execution.executors:LocalExecutor", "runpod": "cvsweep.execution.runpod:RunpodExecutor"}


def create_executor(cfg) -> Executor:
    module, name = EXECUTORS[cfg.name].split(":")
    return getattr(importlib.import_module(module), name)(cfg)


def check_executor(cfg) -> None:
    """Before any work: the executor can run this config (TensorBoard, where the data lives), and
    a remote one is set up and reachable; raises ConfigError."""
    from cvsweep.config.schema import ConfigError

    if cfg.tensorboard and cfg.executor.name != "local":
        raise ConfigError(f"tensorboard=true: TensorBoard logs are written by executor=local only, not {cfg.executor.name}")
    _check_data_location(cfg)
    if cfg.executor.name == "runpod":
        from cvsweep.execution.runpod import check_setup

        check_setup(cfg.executor)


def _check_data_location(cfg) -> None:
    """Data that lives on the worker can only be trained there."""
    from cvsweep.config.schema import ConfigError, DataLocation

    if cfg.dataset.location != DataLocation.worker:
        return
    if cfg.executor.name != "runpod":
        raise ConfigError(f"dataset.location=worker: the data is on the remote worker; executor={cfg.executor.name} "
                          "trains here. Use executor=runpod, or dataset.location=client with a local path")
    if cfg.executor.fallback.name == "local":
        raise ConfigError("executor.fallback=local: a failed trial would train here, but dataset.location=worker "
                          "data is on the worker only; set executor.fallback=none")
