"""The command line: ``cvsweep`` (one run) and ``cvsweep -m`` (a sweep); ``python -m cvsweep`` is the same."""

from __future__ import annotations

import os
import warnings

# Before anything imports TensorFlow (a trial, a forked worker): its C++ INFO and WARNING lines
# stay off the console; the rest of its start-up noise is caught in cvsweep/training/quiet_stderr.py.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from cvsweep.compose import CONF_DIR, register  # noqa: E402

register()
# hydra-optuna-sweeper 1.3 calls Optuna APIs deprecated since Optuna 3 (still working in 5);
# the warnings say nothing a cvsweep user can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(optuna|hydra_plugins)\.")


def main() -> None:
    """The command's entry: credentials from ./.env (the environment wins), then Hydra."""
    from cvsweep.execution.env_file import load_env_file

    load_env_file()
    run()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def run(cfg: DictConfig) -> float:
    import sys
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

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
            if (run_dir / "result.json").exists():
                plot_trial_folders([run_dir])
