"""Executors: where a trial's training runs. Each takes the resolved run config (plain data)
and returns the result of ``train`` on it, with ``executed_on.executor`` set."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def run(self, run_config: dict) -> dict: ...


class LocalExecutor:
    """Trains in this process."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, run_config: dict) -> dict:
        from cvsweep.train import train  # TensorFlow loads only when a trial trains

        result = train(run_config)
        result["executed_on"]["executor"] = "local"
        return result


EXECUTORS = {"local": LocalExecutor}


def create_executor(cfg) -> Executor:
    return EXECUTORS[cfg.name](cfg)
