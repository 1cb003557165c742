"""``python -m cvsweep ...``: the ``cvsweep`` command."""

from cvsweep.cli.main import main

raise SystemExit(main())
