"""``cvsweep datasets fetch NAME [--dest DIR]``: download a dataset that comes as an archive,
check its pinned checksum, unpack it into the layout ``dataset=<name>`` reads, and print the
``dataset.path`` to use (cvsweep/data/archives.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cvsweep.data.archives import ARCHIVES, fetch
from cvsweep.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep datasets``: its one action, ``fetch``.

    Args:
        parser: The subcommand's parser.
    """
    actions = parser.add_subparsers(dest="action", required=True, metavar="fetch")
    get = actions.add_parser("fetch", help="download, check and unpack a dataset", description=__doc__)
    get.add_argument("name", choices=sorted(ARCHIVES))
    get.add_argument("--dest", type=Path, default=None, help="where it goes (default: ./data/<name>)")
    get.add_argument("--url", default=None, help="another address of the same archive (a mirror)")
    get.add_argument("--sha256", default=None, help="the archive's sha256, checked instead of the pinned checksum")


def run(args: argparse.Namespace) -> int:
    """Fetch the dataset and print the overrides that read it.

    Args:
        args: The parsed command line.

    Returns:
        0.

    Raises:
        UserError: For a --sha256 that is no sha256 (exit status 2).
        FetchError: When the fetch failed (exit status 1).
    """
    if args.sha256 is not None and (len(args.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in args.sha256)):
        raise UserError(f"--sha256 {args.sha256}: 64 hexadecimal digits expected (the archive's sha256; leave "
                        "--sha256 out for the pinned checksum)")
    dest = (args.dest or Path("data") / args.name).resolve()
    images = fetch(args.name, dest, args.url, args.sha256, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"dataset={args.name} dataset.path={images}")
    return 0
