"""``python -m cvsweep.datasets fetch gtsrb [--dest DIR]``: download a dataset that comes as an
archive, check its pinned checksum, unpack it into the layout ``dataset=<name>`` reads, and
print the ``dataset.path`` to use (cvsweep/data/archives.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cvsweep.data.archives import ARCHIVES, FetchError, fetch


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m cvsweep.datasets``.

    Args:
        argv: The command-line arguments; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0, or 1 when the fetch failed (argparse exits 2 on a bad command line).
    """
    parser = argparse.ArgumentParser(prog="python -m cvsweep.datasets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download, check and unpack a dataset")
    get.add_argument("name", choices=sorted(ARCHIVES))
    get.add_argument("--dest", type=Path, default=None, help="where it goes (default: ./data/<name>)")
    get.add_argument("--url", default=None, help="another address of the same archive (a mirror)")
    get.add_argument("--sha256", default=None, help="the archive's sha256, checked instead of the pinned checksum")
    args = parser.parse_args(argv)
    if args.sha256 is not None and (len(args.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in args.sha256)):
        parser.error(f"--sha256 {args.sha256}: 64 hexadecimal digits expected")
    dest = (args.dest or Path("data") / args.name).resolve()
    try:
        images = fetch(args.name, dest, args.url, args.sha256, say=lambda line: print(line, file=sys.stderr, flush=True))
    except FetchError as err:
        print(f"cvsweep.datasets: {err}", file=sys.stderr)
        return 1
    print(f"dataset={args.name} dataset.path={images}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
