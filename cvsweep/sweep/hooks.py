"""Hydra callbacks: checks before a run or sweep starts, the summary after a sweep ends.

Hydra turns an exception raised in a callback into a warning and carries on, so a failed
check leaves through SystemExit: the message goes to stderr, the exit status is 2, and no
run or trial folder has been created yet.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from cvsweep.study.full_disk import ends_on_full_disk

EXIT_INVALID_CONFIG = 2
EXIT_NO_TRIAL_COMPLETED = 1


class CvsweepHooks(Callback):
    """The Hydra callbacks of ``hydra/callbacks``: checks before a run or a sweep, the summary after."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check a single run's config, data, executor and output folder.

        Args:
            config: The run's config.
            **kwargs: Hydra's, unused.

        Raises:
            SystemExit: With status 2 when a check fails, or cannot run.
        """
        from cvsweep.sweep.preflight import check_run

        _or_exit(check_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check a sweep before its first trial (cvsweep/sweep/preflight.py's ``check_sweep``).

        Args:
            config: The sweep's config; its direction and study name are settled in it.
            **kwargs: Hydra's, unused.

        Raises:
            SystemExit: With status 2 when a check fails, or cannot run.
        """
        from cvsweep.sweep.preflight import check_sweep

        _or_exit(check_sweep, config)

    @ends_on_full_disk  # one line and exit 1, not Hydra's warning and exit 0
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Keep the best models, write the sweep's summary, and end the process as the sweep ended.

        Args:
            config: The sweep's config.
            **kwargs: Hydra's, unused.

        Raises:
            SystemExit: With the early end's exit code when the loop ended early, or 1 when no
                trial of this run completed (and not every one was pruned).
        """
        from cvsweep.reporting.summary import summarize_sweep
        from cvsweep.sweep import context
        from cvsweep.sweep.keep_models import keep_best

        sweep = context.release()  # the sweeper's context, with why the loop ended early
        ended = sweep.early_end if sweep is not None else None  # interrupted, failures in a row, time limit
        summary = summarize_sweep(config, kept_models=keep_best(config),  # artifacts=best first
                                  ended_early=ended and {"exit_code": ended.exit_code, "message": ended.message})
        if ended is not None:
            print(f"cvsweep: {ended.message}", file=sys.stderr)
            raise SystemExit(ended.exit_code)
        # Nothing to do is fine, and so is a run whose every trial the pruner stopped (the
        # study's earlier trials were better); a run in which none completed otherwise is not.
        all_pruned = summary["n_pruned"] == summary["n_trials"]
        if summary["covers"] == "run" and summary["n_trials"] and not summary["n_completed"] and not all_pruned:
            print("cvsweep: no trial of this run completed", file=sys.stderr)
            raise SystemExit(EXIT_NO_TRIAL_COMPLETED)


def _or_exit(check: Callable[[DictConfig], None], config: DictConfig) -> None:
    from cvsweep.config.schema import ConfigError

    try:
        check(config)
    except ConfigError as err:
        print(f"cvsweep: {err}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID_CONFIG) from None
    except MissingMandatoryValue as err:  # a ??? no option or override filled in
        print(f"cvsweep: {err.full_key}: has no value (???) and needs one (set it: {err.full_key}=VALUE)",
              file=sys.stderr)
        raise SystemExit(EXIT_INVALID_CONFIG) from None
    except Exception as err:  # a check that cannot run must stop the run too
        print(f"cvsweep: the checks before the run failed: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID_CONFIG) from None
