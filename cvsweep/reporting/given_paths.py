"""What the commands take from a path they are given, each through the one rule of what a path
means (cvsweep/reporting/folders.py ``locate``): ``cvsweep evaluate`` a trial's result.json (a
sweep's: its best trial's), ``cvsweep plot`` trial folders, ``cvsweep compare`` a trial's result."""

from __future__ import annotations

from pathlib import Path

from cvsweep.jsonio import read_json
from cvsweep.layout import is_trial_folder, result_of, summary_of
from cvsweep.reporting.folders import NotATrialOrSweep, finished_trial_folders, locate


def result_to_evaluate(given: str | Path) -> Path:
    """The result.json that ``given`` means to ``cvsweep evaluate``.

    Args:
        given: A trial folder, its result.json, or a sweep folder.

    Returns:
        The trial's result.json; for a sweep folder, its best trial's: the study's best, as
        its summary names it (cvsweep/reporting/summary.py ``best_model``).

    Raises:
        NotATrialOrSweep: For a path that is none of these, a sweep without a summary, or one
            whose summary names no best trial.
    """
    where = locate(given)
    if not where.is_sweep:
        return result_of(where.folder)
    path = where.folder
    if not where.has_summary:
        raise NotATrialOrSweep(f"{path}: a sweep folder without {summary_of(path).name} yet (still running, or "
                               f"stopped before its end): evaluate one of its trial folders, e.g. "
                               f"{finished_trial_folders(path)[0]}")
    from cvsweep.reporting.summary import best_model  # its imports stay out of --help

    summary = read_json_or_refuse(summary_of(path))
    try:
        best = best_model(summary, path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise NotATrialOrSweep(f"{summary_of(path)}: not a summary whose best trial can be found ({err})") from None
    if best is None:
        raise NotATrialOrSweep(f"{summary_of(path)}: the sweep has no completed trial to evaluate")
    return result_of(best["trial_dir"])


def trials_to_plot(given: str | Path) -> tuple[list[Path], Path | None]:
    """The trial folders ``given`` means to ``cvsweep plot``.

    Args:
        given: A trial folder, its result.json, or a sweep folder.

    Returns:
        The trial folders (a sweep's: those its summary lists, or before it has one, those
        with a result.json), and the sweep folder whose report to write again (None for a
        single trial, or a sweep without summary.json yet).

    Raises:
        NotATrialOrSweep: For any other path, or a sweep whose summary.json cannot be read.
    """
    where = locate(given)
    if not where.is_sweep:
        return [where.folder], None
    path = where.folder
    if where.has_summary:
        listed = [path / trial["job"] for trial in sweep_summary(path)["trials"]]
        return [folder for folder in listed if is_trial_folder(folder)], path
    return finished_trial_folders(path), None


def sweep_summary(sweep_dir: Path) -> dict:
    """A sweep's summary.json, checked to list its trials by job.

    Args:
        sweep_dir: The sweep folder.

    Returns:
        The summary.

    Raises:
        NotATrialOrSweep: When it cannot be read, or lists a trial without a job.
    """
    try:
        summary = read_json(summary_of(sweep_dir))
        if not all(isinstance(t.get("job"), str) for t in summary["trials"]):
            raise ValueError("a trial without a job")
        return summary
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise NotATrialOrSweep(f"{summary_of(sweep_dir)}: not a sweep summary ({type(err).__name__}: {err})") from None


def read_json_or_refuse(path: Path):
    """A JSON file a command was pointed at.

    Args:
        path: The file.

    Returns:
        Its content.

    Raises:
        NotATrialOrSweep: When it cannot be read, or is not JSON; the message names it.
    """
    try:
        return read_json(path)
    except (OSError, ValueError) as err:  # unreadable, or not JSON
        raise NotATrialOrSweep(f"{path}: cannot be read as JSON: {err}") from None


def trial_result(given: str | Path) -> dict:
    """The result of the one trial ``given`` names, for ``cvsweep compare``.

    Args:
        given: A trial folder, or a result file (result.json, or a copy of one by another name).

    Returns:
        The result's content.

    Raises:
        NotATrialOrSweep: For a sweep folder, a path that is no trial's, or a result that is
            no JSON object.
    """
    if Path(given).is_file():  # a result kept under another name is still a result
        path = Path(given)
    else:
        where = locate(given)
        if where.is_sweep:
            raise NotATrialOrSweep(f"{given}: a sweep folder, not one trial (compare two trial folders, e.g. "
                                   f"{Path(given) / '0'})")
        path = result_of(where.folder)
    result = read_json_or_refuse(path)
    if not isinstance(result, dict):
        raise NotATrialOrSweep(f"{path}: not a trial's result (a JSON object expected)")
    return result
