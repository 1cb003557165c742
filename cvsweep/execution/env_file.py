"""Credentials and endpoint settings from a ``.env`` file in the working folder, for the commands
that talk to RunPod or an S3 store (cvsweep, cvsweep deploy, cvsweep serve).

The file holds ``KEY=VALUE`` lines (comments, quotes and ``export`` allowed; parsed by
python-dotenv, without ``${...}`` expansion). Only the variables cvsweep reads are taken from it
(``VARIABLES``), and only where the environment does not set them: the environment wins. A file
that its group or others may read gets a warning naming it and ``chmod 600``. Values are never
printed: they go into this process's environment, where cvsweep/execution/redact.py scrubs them
from every message as it does for values set by hand.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Callable

from dotenv import dotenv_values

from cvsweep.execution.model_transport import REGION
from cvsweep.execution.redact import API_KEY_VARIABLE, STORE_CREDENTIALS

ENV_FILE = ".env"
ENDPOINT_VARIABLE = "RUNPOD_ENDPOINT_ID"  # conf/executor/runpod.yaml's executor.endpoint_id
BASE_URL_VARIABLE = "RUNPOD_ENDPOINT_BASE_URL"  # conf/executor/runpod.yaml's executor.base_url
REST_URL_VARIABLE = "RUNPOD_REST_URL"  # RunPod's REST API v2 (https://api.runpod.io/v2), for cvsweep deploy
VARIABLES = (API_KEY_VARIABLE, ENDPOINT_VARIABLE, BASE_URL_VARIABLE, REST_URL_VARIABLE, *STORE_CREDENTIALS, REGION)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def load_env_file(path: str | os.PathLike = ENV_FILE, warn: Callable[[str], None] = _warn) -> list[str]:
    """Set the ``VARIABLES`` that ``path`` names and the environment lacks (the environment wins).

    Args:
        path: The file (default: ``.env`` in the working folder); no file, no change.
        warn: Told of a file others may read, and of names it holds that cvsweep ignores.

    Returns:
        The names set.
    """
    path = Path(path)
    if not path.is_file():
        return []
    shown = path.resolve()
    mode = path.stat().st_mode
    if mode & 0o077:
        warn(f"{shown} can be read by others (mode {stat.S_IMODE(mode):04o}) and may hold credentials: "
             f"chmod 600 {shown}")
    values = dotenv_values(path, interpolate=False)
    ignored = sorted(name for name in values if name not in VARIABLES)
    if ignored:
        warn(f"{shown}: ignored {', '.join(ignored)}; cvsweep reads only {', '.join(VARIABLES)} from it")
    loaded = []
    for name in VARIABLES:
        value = values.get(name)
        if value and not os.environ.get(name):  # the environment wins
            os.environ[name] = value
            loaded.append(name)
    return loaded
