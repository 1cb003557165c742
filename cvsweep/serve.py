"""``python -m cvsweep.serve``: the sweep service (HTTP API, web page, study dashboard).
See README, "Service", and cvsweep/service/."""

from __future__ import annotations

import logging
import sys

from cvsweep.training.tf_runtime import configure_entry_point

configure_entry_point()  # first, before anything imports TensorFlow

import uvicorn  # noqa: E402

from cvsweep.execution.env_file import load_env_file  # noqa: E402
from cvsweep.service.app import create_app  # noqa: E402
from cvsweep.service.settings import SettingsError, parse  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Start the sweep service.

    Args:
        argv: The command line after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 2 for settings it refuses, else 0 when the server stops.
    """
    load_env_file()  # credentials from ./.env for the sweeps it starts (the environment wins)
    try:
        settings = parse(argv)
    except SettingsError as err:
        print(f"cvsweep.serve: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    print(f"cvsweep service on http://{settings.host}:{settings.port}/ (outputs: {settings.root}, "
          f"{settings.max_running} sweep(s) at once, token {'required' if settings.token else 'off'})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
