"""``cvsweep compare A B``: compare two trial results and explain any difference, most telling
cause first (cvsweep/reporting/result_diff.py):

    cvsweep compare outputs/sweeps/A/0/result.json outputs/sweeps/B/3

Exit status 0 when the metrics are bit-identical, 1 when they differ, 2 for a path that is no
trial's result.
"""

from __future__ import annotations

import argparse

from cvsweep.reporting.given_paths import trial_result
from cvsweep.reporting.result_diff import explain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep compare``.

    Args:
        parser: The subcommand's parser.
    """
    for which in ("a", "b"):
        parser.add_argument(which, metavar=which.upper(), help="a trial folder or its result.json (any file name)")


def run(args: argparse.Namespace) -> int:
    """Print how B's result differs from A's.

    Args:
        args: The parsed command line.

    Returns:
        0 when the metrics are bit-identical, 1 when they differ.

    Raises:
        UserError: For a path that is no trial's result (exit status 2).
    """
    a, b = trial_result(args.a), trial_result(args.b)
    same_fp = a.get("fingerprint") == b.get("fingerprint")
    print(f"fingerprint: {'same' if same_fp else 'differs'} "
          f"({str(a.get('fingerprint', '?'))[:12]} vs {str(b.get('fingerprint', '?'))[:12]})")
    lines, identical = explain(a, b)
    print("\n".join(lines))
    return 0 if identical else 1
