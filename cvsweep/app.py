"""The command line: ``cvsweep`` (one run) and ``cvsweep -m`` (a sweep); ``python -m cvsweep`` is the same."""

from __future__ import annotations

import sys
from pathlib import Path

# First, before anything imports TensorFlow (a trial, a forked worker).
from cvsweep.training.tf_runtime import configure_entry_point

configure_entry_point()

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from cvsweep import layout  # noqa: E402
from cvsweep.compose import CONF_DIR, register  # noqa: E402
from cvsweep.execution.env_file import load_env_file  # noqa: E402

register()


def main() -> None:
    """The command's entry: credentials from ./.env (the environment wins), then Hydra."""
    load_env_file()
    run()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def run(cfg: DictConfig) -> float:
    """Run one training run, or one trial of a sweep, as Hydra composed it.

    A single run that fails prints its reason and exits 1; a sweep's trial leaves its failure to
    the sweeper. A single run with plots ``all`` or ``best`` gets its trial plots, even when it
    failed.

    Args:
        cfg: The composed config.

    Returns:
        The trial's objective value, which the sweeper records.

    Raises:
        SystemExit: With status 1 when a single run fails.
    """
    # A trial's modules (executors, training, plots) stay out of --help and --info.
    from cvsweep.sweep.trial import TrialFailed, run_trial

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return run_trial(cfg)  # a failure: the sweeper records it; plots: when the sweep ends
    try:
        return run_trial(cfg)
    except TrialFailed as err:
        print(f"cvsweep: the run failed: {err}", file=sys.stderr)  # a reason, not a traceback
        raise SystemExit(1) from None
    finally:  # once result.json is written, so a failed run still gets the plots its data allows
        if cfg.plots.name in ("all", "best"):  # a single run is its own best
            from cvsweep.reporting.plots import plot_trial_folders

            run_dir = Path(HydraConfig.get().runtime.output_dir)
            if layout.is_trial_folder(run_dir):
                plot_trial_folders([run_dir])
