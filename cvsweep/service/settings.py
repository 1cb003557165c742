"""The service's settings, defined once: the command's flags (cvsweep/cli/serve.py) are derived
from this dataclass, and ``serve.NAME`` in messages is the flag ``--NAME``."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import subprocess
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Optional

from cvsweep.errors import UserError

TOKEN_VARIABLE = "CVSWEEP_API_TOKEN"
# What one request may carry: a sweep's overrides are a few dozen short lines.
MAX_BODY_BYTES = 64 * 1024
MAX_OVERRIDES = 200
MAX_OVERRIDE_CHARS = 2000


@dataclass
class ServeSettings:
    """The service's settings: where it listens, where sweeps go, how many run, its data roots and token."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; any but loopback needs a token"})
    port: int = field(default=8000, metadata={"help": "port to bind"})
    output_root: str = field(default="outputs", metadata={"help": "where sweeps and the study storage live"})
    # None: 1 on a CPU machine (a sweep's trials use every core), else one per GPU.
    max_running: Optional[int] = field(default=None, metadata={"help": "sweeps running at once; the rest queue "
                                                                       "(default: 1, or one per GPU)"})
    max_queued: int = field(default=20, metadata={"help": "sweeps that may wait in the queue; more are refused "
                                                           "(429) until some start"})
    data_roots: list[str] = field(default_factory=list, metadata={
        "help": "a folder a request's dataset.path may point into (repeat for several; default: none)"})
    token: Optional[str] = field(default=None, repr=False, metadata={"help": None})  # from the environment only

    @property
    def root(self) -> Path:
        """The outputs root, resolved."""
        return Path(self.output_root).resolve()

    @property
    def storage_url(self) -> str:
        """The study storage every sweep of the service uses (the command's default, below the root)."""
        return f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def loopback(self) -> bool:
        """Whether the service binds a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class SettingsError(UserError):
    """Settings the service refuses to start with; the message names the setting and the fix."""


def parse(argv: list[str] | None = None) -> ServeSettings:
    """The command line and the environment as settings, checked.

    A server that would be reachable from other machines without a token refuses to start.

    Args:
        argv: The command-line arguments; default ``sys.argv[1:]``.

    Returns:
        The checked settings.

    Raises:
        SettingsError: See ``check``.
    """
    parser = argparse.ArgumentParser(prog="cvsweep serve",
                                     description="The cvsweep sweep service: HTTP API, web page, study dashboard.")
    add_arguments(parser)
    return settings_from(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The service's flags, one per setting (``--NAME`` for ``serve.NAME``).

    Args:
        parser: The parser of ``cvsweep serve``.
    """
    for f in fields(ServeSettings):
        if f.metadata.get("help") is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "data_roots":
            parser.add_argument("--data-root", dest=f.name, action="append", default=[], help=f.metadata["help"])
        else:
            kind = int if f.name in ("port", "max_running", "max_queued") else str
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default if f.default is not MISSING else None,
                                help=f.metadata["help"])


def settings_from(args: argparse.Namespace) -> ServeSettings:
    """The parsed flags and the environment's token as settings, checked.

    Args:
        args: What ``add_arguments``'s flags parsed to (other attributes are ignored).

    Returns:
        The checked settings.

    Raises:
        SettingsError: See ``check``.
    """
    given = {f.name: getattr(args, f.name) for f in fields(ServeSettings) if f.metadata.get("help") is not None}
    settings = ServeSettings(**given, token=os.environ.get(TOKEN_VARIABLE) or None)
    check(settings)
    return settings


def check(settings: ServeSettings) -> None:
    """Check the settings and complete them: the default max_running, the data roots resolved.

    The outputs root is created.

    Args:
        settings: The settings, changed in place.

    Raises:
        SettingsError: For a reachable server without a token, a short token, a bad port or
            count, a data root that is no folder, an outputs root that cannot be created, or a
            study storage there that cannot be opened.
    """
    if not settings.loopback and not settings.token:
        raise SettingsError(f"serve.host={settings.host} is reachable from other machines: set {TOKEN_VARIABLE} "
                            "(clients send it as 'Authorization: Bearer <token>'), or bind 127.0.0.1")
    if settings.token is not None and len(settings.token) < 16:
        raise SettingsError(f"{TOKEN_VARIABLE} is {len(settings.token)} characters: use at least 16 "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not 0 < settings.port < 65536:
        raise SettingsError(f"serve.port={settings.port}: allowed is 1-65535")
    if settings.max_running is None:
        settings.max_running = default_max_running()
    if settings.max_running < 1:
        raise SettingsError(f"serve.max_running={settings.max_running}: allowed is a whole number >= 1")
    if settings.max_queued < 0:
        raise SettingsError(f"serve.max_queued={settings.max_queued}: allowed is a whole number >= 0")
    roots = []
    for root in settings.data_roots:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise SettingsError(f"serve.data_roots: {root} is not a folder")
        roots.append(str(path))
    settings.data_roots = roots
    try:
        settings.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SettingsError(f"serve.output_root={settings.output_root}: cannot create it ({err.strerror})") from err
    check_study_storage(settings)


def check_study_storage(settings: ServeSettings) -> None:
    """Open the service's study storage once, as a sweep's checks do (cvsweep/study/storage.py),
    so that a file there that is no database is refused in one line before the server listens.

    Args:
        settings: The settings, their outputs root created.

    Raises:
        SettingsError: The storage cannot be opened; the message names the file and the fix.
    """
    from cvsweep.config.schema import ConfigError
    from cvsweep.study.storage import check_storage_url

    try:
        check_storage_url(settings.storage_url, key="serve.output_root", value=settings.output_root,
                          elsewhere="start the service with another --output-root")
    except ConfigError as err:
        raise SettingsError(str(err)) from None


def default_max_running() -> int:
    """1 on a CPU machine; one per NVIDIA GPU.

    Asked of nvidia-smi, not TensorFlow: the server never imports it.

    Returns:
        The number of sweeps to run at once by default.
    """
    if shutil.which("nvidia-smi") is None:
        return 1
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 1
    return max(1, sum(line.startswith("GPU ") for line in listed.splitlines()))
