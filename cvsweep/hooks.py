"""Hydra callbacks: checks before a run or sweep starts, the summary after a sweep ends."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class CvsweepHooks(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from cvsweep.preflight import check_run

        check_run(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from cvsweep.preflight import check_sweep

        check_sweep(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from cvsweep.summary import summarize_sweep

        summarize_sweep(config)
