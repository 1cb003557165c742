"""Draw trial plots on demand, from the trials' result.json:

    python -m cvsweep.plot outputs/sweeps/<time>/3    # a trial folder (or a run's, outputs/runs/<time>), or its result.json
    python -m cvsweep.plot outputs/sweeps/<time>      # a sweep folder: every trial of it, then report.html again

Trials never draw plots while a sweep runs (that would cost seconds a trial); with plots=all a
sweep draws its top trials' plots when it ends, with plots=best its best trial's
(cvsweep/reporting/summary.py), and this draws any others. For a sweep folder, "every trial" is every trial its summary.json lists (the
trials its report shows), or, before there is a summary (a sweep still running, or killed),
every trial folder in it that has a result.json; report.html is then written again from
summary.json, so that it links the new plots. The files are those of "Diagnostics and plots"
in the README (history.png, confusion.png, ...), beside each result.json.

Exit status 0 when every trial's plots were drawn, 1 when some could not be (each named),
2 for a path that is not a trial or sweep folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cvsweep.jsonio import read_json
from cvsweep.layout import is_trial_folder, result_of, summary_of
from cvsweep.reporting.folders import NotATrialOrSweep, finished_trial_folders, locate

USAGE = "usage: python -m cvsweep.plot PATH  (a trial folder with result.json, its result.json, or a sweep folder)"


def trial_folders_of(given: str) -> tuple[list[Path], Path | None]:
    """The trial folders PATH means.

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
        return [path / trial["job"] for trial in _summary(path)["trials"] if is_trial_folder(path / trial["job"])], path
    return finished_trial_folders(path), None


def _summary(sweep_dir: Path) -> dict:
    try:
        summary = read_json(summary_of(sweep_dir))
        if not all(isinstance(t.get("job"), str) for t in summary["trials"]):
            raise ValueError("a trial without a job")
        return summary
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise NotATrialOrSweep(f"{summary_of(sweep_dir)}: not a sweep summary ({type(err).__name__}: {err})") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m cvsweep.plot PATH``.

    Args:
        argv: The arguments; ``sys.argv[1:]`` when None.

    Returns:
        0 when every trial's plots were drawn, 1 when some could not be, 2 for a path that is
        no trial or sweep folder.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        folders, sweep_dir = trial_folders_of(argv[0])
    except NotATrialOrSweep as err:
        print(f"cvsweep.plot: {err}", file=sys.stderr)
        return 2
    from cvsweep.reporting.plots import plot_trial

    failed = 0
    for folder in folders:
        try:
            drawn = plot_trial(read_json(result_of(folder)), folder)
        except Exception as err:  # one trial's bad record must not stop the others
            print(f"cvsweep.plot: {folder}: could not draw its plots: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{folder}: {', '.join(p.name for p in drawn) or 'nothing to plot (no history recorded)'}")
    if sweep_dir is not None:
        from cvsweep.reporting.report import write_report

        summary = _summary(sweep_dir)
        sweep_plots = [sweep_dir / name for name in summary.get("plots") or [] if (sweep_dir / name).is_file()]
        print(f"Report: {write_report(summary, sweep_dir, sweep_plots)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
