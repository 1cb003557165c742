"""Executors: where a trial's training runs. Each takes a prepared trial
(cvsweep/execution/prepared.py) and returns the result of ``train`` on its run config, with
``executed_on.executor`` set: ``local`` (cvsweep/execution/local.py) or ``runpod``
(cvsweep/execution/runpod.py)."""

from __future__ import annotations

from typing import Optional, Protocol, Union

from cvsweep.config.schema import ConfigError, DataLocation
from cvsweep.execution.checks import check_setup
from cvsweep.execution.local import LocalExecutor, ProgressCallback, PruneCallback
from cvsweep.execution.prepared import PreparedTrial
from cvsweep.execution.runpod import RunpodExecutor
from cvsweep.training.result import Result

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "ProgressCallback", "PruneCallback", "RunpodExecutor",
           "check_executor", "create_executor"]


class Executor(Protocol):
    """Where a trial trains: this process (cvsweep/execution/local.py) or a RunPod endpoint."""

    def run(self, trial: Union[PreparedTrial, dict], tensorboard_dir: str | None = None,
            progress: Optional[ProgressCallback] = None, model_dir: str | None = None,
            prune: Optional[PruneCallback] = None) -> Result:
        """Run one trial.

        Args:
            trial: The prepared trial (or its plain run config).
            tensorboard_dir: Where TensorBoard logs go (executor=local only).
            progress: Called with each epoch's report.
            model_dir: Where a completed run's model file goes (None: not kept).
            prune: Asked after each epoch; True stops the run, which comes back with status
                pruned and what it trained.

        Returns:
            The run's result (a failed one says why; it never raises for a failed run).
        """


EXECUTORS = {"local": LocalExecutor, "runpod": RunpodExecutor}


def create_executor(cfg) -> Executor:
    """The executor that ``cfg`` names.

    Args:
        cfg: The ``executor`` part of the composed config.

    Returns:
        A ready executor for ``cfg.name``.
    """
    return EXECUTORS[cfg.name](cfg)


def check_executor(cfg) -> None:
    """Before any work: the executor can run this config (TensorBoard, where the data lives), and
    a remote one is set up and reachable.

    Args:
        cfg: The composed config.

    Raises:
        ConfigError: What the executor cannot do, and the fix.
    """
    if cfg.tensorboard and cfg.executor.name != "local":
        raise ConfigError(f"tensorboard=true: TensorBoard logs are written by executor=local only, not {cfg.executor.name}")
    _check_data_location(cfg)
    if cfg.executor.name == "runpod":
        check_setup(cfg.executor)


def _check_data_location(cfg) -> None:
    """Data that lives on the worker can only be trained there."""
    if cfg.dataset.location != DataLocation.worker:
        return
    if cfg.executor.name != "runpod":
        raise ConfigError(f"dataset.location=worker: the data is on the remote worker; executor={cfg.executor.name} "
                          "trains here. Use executor=runpod, or dataset.location=client with a local path")
    if cfg.executor.fallback.name == "local":
        raise ConfigError("executor.fallback=local: a failed trial would train here, but dataset.location=worker "
                          "data is on the worker only; set executor.fallback=none")
