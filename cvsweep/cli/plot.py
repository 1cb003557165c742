"""``cvsweep plot PATH``: draw trial plots on demand, from the trials' result.json.

    cvsweep plot outputs/sweeps/<time>/3    # a trial folder (or a run's, outputs/runs/<time>), or its result.json
    cvsweep plot outputs/sweeps/<time>      # a sweep folder: every trial of it, then report.html again

Trials never draw plots while a sweep runs (that would cost seconds a trial); with plots=all a
sweep draws its top trials' plots when it ends, with plots=best its best trial's
(cvsweep/reporting/summary.py), and this draws any others. For a sweep folder, "every trial" is
every trial its summary.json lists (the trials its report shows), or, before there is a summary
(a sweep still running, or killed), every trial folder in it that has a result.json; report.html
is then written again from summary.json, so that it links the new plots. The files
(history.png, confusion.png, ...) go beside each result.json.

Exit status 0 when every trial's plots were drawn, 1 when some could not be (each named),
2 for a path that is not a trial or sweep folder.
"""

from __future__ import annotations

import argparse
import sys

from cvsweep.jsonio import read_json
from cvsweep.layout import result_of
from cvsweep.reporting.given_paths import sweep_summary, trials_to_plot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep plot``.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument("path", help="a trial folder, its result.json, or a sweep folder (every trial)")


def run(args: argparse.Namespace) -> int:
    """Draw the plots of the trials PATH means, then a sweep's report again.

    Args:
        args: The parsed command line.

    Returns:
        0 when every trial's plots were drawn, 1 when some could not be.

    Raises:
        UserError: For a path that is no trial or sweep folder (exit status 2).
    """
    folders, sweep_dir = trials_to_plot(args.path)
    from cvsweep.reporting.plots import plot_trial

    failed = 0
    for folder in folders:
        try:
            drawn = plot_trial(read_json(result_of(folder)), folder)
        except Exception as err:  # one trial's bad record must not stop the others
            print(f"cvsweep plot: {folder}: could not draw its plots: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{folder}: {', '.join(p.name for p in drawn) or 'nothing to plot (no history recorded)'}")
    if sweep_dir is not None:
        from cvsweep.reporting.report import write_report

        summary = sweep_summary(sweep_dir)
        sweep_plots = [sweep_dir / name for name in summary.get("plots") or [] if (sweep_dir / name).is_file()]
        print(f"Report: {write_report(summary, sweep_dir, sweep_plots)}")
    return 1 if failed else 0
