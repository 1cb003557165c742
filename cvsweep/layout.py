"""What a run leaves on disk: the names of a trial folder's and a sweep folder's files, in one
place. A sweep folder holds one trial folder per Hydra job (``<sweep>/<job>/``); a single run's
folder is a trial folder itself.

Every module that reads or writes these files names them through this module, so a renamed
file is renamed once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

# A trial folder's files.
RESULT = "result.json"  # the trial's record: config, fingerprint, metrics, where it ran
RUN_CONFIG = "run_config.yaml"  # the resolved training config the trial ran
PROGRESS = "progress.json"  # the running trial's epochs so far
MODEL = "model.keras"  # the trained model, when kept
# The per-trial plots, drawn when the sweep ends (cvsweep/reporting/plots.py)
TRIAL_PLOTS = ("history.png", "confusion.png", "gradients.png", "weights.png", "activations.png")

# A sweep folder's files.
SUMMARY = "summary.json"  # every trial's outcome, the best trial, the study
REPORT = "report.html"  # the self-contained report
OPTIMIZATION_RESULTS = "optimization_results.yaml"  # Hydra's Optuna sweeper's own answer

PathLike = Union[str, Path]


def trial_dir(sweep_dir: PathLike, job: Union[int, str]) -> Path:
    """The folder of a sweep's job number ``job``.

    Args:
        sweep_dir: The sweep folder (Hydra's ``hydra.sweep.dir``).
        job: The Hydra job number.

    Returns:
        ``<sweep_dir>/<job>``.
    """
    return Path(sweep_dir) / str(job)


def result_of(folder: PathLike) -> Path:
    """The ``result.json`` of a trial folder.

    Args:
        folder: The trial folder.

    Returns:
        ``<folder>/result.json``.
    """
    return Path(folder) / RESULT


def summary_of(sweep_dir: PathLike) -> Path:
    """The ``summary.json`` of a sweep folder.

    Args:
        sweep_dir: The sweep folder.

    Returns:
        ``<sweep_dir>/summary.json``.
    """
    return Path(sweep_dir) / SUMMARY


def report_of(sweep_dir: PathLike) -> Path:
    """The ``report.html`` of a sweep folder.

    Args:
        sweep_dir: The sweep folder.

    Returns:
        ``<sweep_dir>/report.html``.
    """
    return Path(sweep_dir) / REPORT


def is_trial_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding a finished trial's ``result.json``.

    Args:
        path: Any path.

    Returns:
        True when ``<path>/result.json`` is a file.
    """
    return result_of(path).is_file()


def is_sweep_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding a sweep's ``summary.json``.

    Args:
        path: Any path.

    Returns:
        True when ``<path>/summary.json`` is a file.
    """
    return summary_of(path).is_file()
