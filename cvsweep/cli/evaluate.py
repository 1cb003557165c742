"""``cvsweep evaluate PATH``: evaluate a trial's saved model on its test split and check its
test loss and accuracy against the ones its result.json recorded (cvsweep/training/reevaluate.py).

    cvsweep evaluate outputs/sweeps/<time>/3              # a trial folder
    cvsweep evaluate outputs/sweeps/<time>/3/result.json  # its result
    cvsweep evaluate outputs/sweeps/<time>                # a sweep: the study's best trial

Exit status 0 when both are equal, 1 when they differ (another device or library versions:
see ``cvsweep compare``), 2 for input that cannot be evaluated, with a message that names the
file.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cvsweep.reporting.given_paths import result_to_evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep evaluate``.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument("path", help="a trial folder, its result.json, or a sweep folder (its best trial)")


def run(args: argparse.Namespace) -> int:
    """Evaluate the model of the trial PATH means and print both figures side by side.

    Args:
        args: The parsed command line.

    Returns:
        0 when the test figures equal the recorded ones, 1 when they differ.

    Raises:
        UserError: For input that cannot be evaluated (exit status 2).
    """
    result_path = result_to_evaluate(args.path)
    logging.getLogger("tensorflow.startup").disabled = True  # its start-up lines, caught off fd 2 (quiet_stderr.py)
    from cvsweep.training.reevaluate import COMPARED, evaluate

    recorded, now = evaluate(result_path)
    print(f"model: {result_path.parent}")
    print(f"{'metric':<14} {'recorded':>22} {'now':>22}")
    equal = True
    for key in COMPARED:
        same = recorded.get(key) == now[key]
        equal &= same
        print(f"{key:<14} {recorded.get(key)!r:>22} {now[key]!r:>22}  {'equal' if same else 'DIFFERS'}")
    if equal:
        print("test loss and accuracy equal the recorded ones exactly")
        return 0
    print("test loss or accuracy differ from the recorded ones: they are equal only on the machine that trained "
          "the model, with the same library versions and training.deterministic=true (the default); another device "
          "or library versions give other low-order bits (the result records where it trained: executed_on, "
          "versions)", file=sys.stderr)
    return 1
