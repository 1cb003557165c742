"""``cvsweep``: the one front door. A first argument that names a subcommand runs it; any other
command line goes to the Hydra app unchanged (``cvsweep [overrides]``, ``cvsweep -m ...``).

Every subcommand is set up alike: one parser (argparse, a subparser each), the process set-up
done once (cvsweep/training/tf_runtime.py ``configure_entry_point``, before anything imports
TensorFlow), and one error style: ``cvsweep <sub>: <what is wrong> (<fix>)`` on one line, exit
status 2 for bad input, 1 for a failed run, 130 after Ctrl-C and 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from cvsweep.cli.subcommands import SUBCOMMANDS
from cvsweep.errors import CvsweepError, UserError
from cvsweep.training.tf_runtime import configure_entry_point

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a refused command line said in one line and exit status 2."""

    def error(self, message: str):
        """Refuse the command line: one line naming the problem and where the usage is.

        Args:
            message: argparse's description of the problem.

        Raises:
            SystemExit: With status 2.
        """
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def subcommand_module(name: str):
    """The module of a subcommand.

    Args:
        name: The subcommand, a key of ``SUBCOMMANDS``.

    Returns:
        Its module under cvsweep/cli/.
    """
    return importlib.import_module(f"cvsweep.cli.{SUBCOMMANDS[name][0]}")


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand (the Hydra app parses its own command line).

    Args:
        only: Build this subcommand's parser alone (the others' modules stay unimported).

    Returns:
        ``cvsweep``'s parser, a subparser per subcommand, each with ``run`` as its default.
    """
    top = OneLineParser(prog="cvsweep", description="cvsweep's subcommands; cvsweep --help for runs and sweeps.")
    subcommands = top.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=OneLineParser)
    for name in SUBCOMMANDS if only is None else [only]:
        module = subcommand_module(name)
        sub = subcommands.add_parser(name, help=SUBCOMMANDS[name][1], description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run ``cvsweep ARGV``.

    Args:
        argv: The command line after ``cvsweep``; default ``sys.argv[1:]``.

    Returns:
        The exit status.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    configure_entry_point()  # first: nothing has imported TensorFlow yet
    if not argv or argv[0] not in SUBCOMMANDS:
        from cvsweep.cli.hydra_app import main as hydra_app

        return hydra_app(argv)
    return run_subcommand(argv)


def run_subcommand(argv: list[str]) -> int:
    """Parse and run a subcommand, and turn what it raises into its one line and exit status.

    Args:
        argv: The command line after ``cvsweep``, a subcommand first.

    Returns:
        0, or the subcommand's own status; 2 for bad input, 1 for a failed run, 130 or 143
        when interrupted or terminated.
    """
    try:
        args = parser(only=argv[0]).parse_args(argv)
    except SystemExit as done:  # --help, or a refused command line (said already)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    prog = f"cvsweep {argv[0]}"
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.run(args)
    except UserError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CvsweepError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds the subcommand as Ctrl-C does (its cleanup runs), then exit 143."""


def _terminated(signum, frame):
    raise Terminated()
