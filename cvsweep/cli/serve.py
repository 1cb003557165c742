"""``cvsweep serve``: the sweep service (HTTP API, web page, study dashboard), cvsweep/service/.
Its flags are derived from the service's settings (cvsweep/service/settings.py)."""

from __future__ import annotations

import argparse
import logging

from cvsweep.service import settings as service_settings
from cvsweep.service.settings import settings_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep serve``: a flag per setting of the service.

    Args:
        parser: The subcommand's parser.
    """
    service_settings.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Start the sweep service and serve until it is stopped.

    Args:
        args: The parsed command line.

    Returns:
        0 when the server stops.

    Raises:
        SettingsError: For settings it refuses (a UserError: exit status 2).
    """
    from cvsweep.execution.env_file import load_env_file

    load_env_file()  # credentials from ./.env for the sweeps it starts (the environment wins)
    settings = settings_from(args)  # a SettingsError is a UserError: the dispatcher says it, exit 2
    import uvicorn

    from cvsweep.service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    print(f"cvsweep service on http://{settings.host}:{settings.port}/ (outputs: {settings.root}, "
          f"{settings.max_running} sweep(s) at once, token {'required' if settings.token else 'off'})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0
