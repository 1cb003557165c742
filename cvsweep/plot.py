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

USAGE = "usage: python -m cvsweep.plot PATH  (a trial folder with result.json, its result.json, or a sweep folder)"


class BadInput(Exception):
    """A path that is not a trial or sweep folder; the message says what is expected."""


def trial_folders_of(given: str) -> tuple[list[Path], Path | None]:
    """The trial folders PATH means, and the sweep folder whose report to write again (None
    for a single trial, or a sweep without summary.json yet)."""
    from cvsweep.reporting.summary import trial_folders

    path = Path(given)
    if path.is_file() and path.name == "result.json":
        return [path.parent], None
    if path.is_dir() and (path / "result.json").is_file():
        return [path], None
    if path.is_dir() and (path / "summary.json").is_file():
        summary = _summary(path)
        return [path / trial["job"] for trial in summary["trials"] if (path / trial["job"] / "result.json").is_file()], path
    folders = [f for f in trial_folders(path) if (f / "result.json").is_file()] if path.is_dir() else []
    if folders:
        return folders, None
    what = "not" if path.exists() else "does not exist; expected"
    raise BadInput(f"{given}: {what} a trial folder (a folder with result.json), a result.json or a sweep folder (a folder with "
                   "summary.json, or with trial folders 0, 1, ... that hold result.json)")


def _summary(sweep_dir: Path) -> dict:
    from cvsweep.jsonio import read_json

    try:
        summary = read_json(sweep_dir / "summary.json")
        if not all(isinstance(t.get("job"), str) for t in summary["trials"]):
            raise ValueError("a trial without a job")
        return summary
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BadInput(f"{sweep_dir / 'summary.json'}: not a sweep summary ({type(err).__name__}: {err})") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        folders, sweep_dir = trial_folders_of(argv[0])
    except BadInput as err:
        print(f"cvsweep.plot: {err}", file=sys.stderr)
        return 2
    from cvsweep.jsonio import read_json
    from cvsweep.reporting.plots import plot_trial

    failed = 0
    for folder in folders:
        try:
            drawn = plot_trial(read_json(folder / "result.json"), folder)
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
