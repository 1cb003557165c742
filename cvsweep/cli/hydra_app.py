"""``cvsweep [overrides]`` (one run) and ``cvsweep -m [overrides]`` (a sweep): the Hydra app.
cvsweep/cli/main.py hands it every command line that names no subcommand."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cvsweep import help_text, layout
from cvsweep.cli.composition import composition_problem
from cvsweep.cli.subcommands import listing
from cvsweep.compose import CONF_DIR, register
from cvsweep.execution.env_file import load_env_file

register()
help_text.register_subcommands(listing())
EXIT_BAD_INPUT = 2


def main(argv: list[str]) -> int:
    """The app's entry: credentials from ./.env (the environment wins), a config Hydra would
    refuse refused in one line, then Hydra.

    Args:
        argv: The command line after ``cvsweep``.

    Returns:
        0 when Hydra returns (it exits itself otherwise), 2 for a config it cannot compose.
    """
    load_env_file()
    problem = composition_problem(argv)
    if problem is not None:
        print(f"cvsweep: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.argv = [sys.argv[0], *argv]  # Hydra reads its command line there
    run()
    return 0


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
