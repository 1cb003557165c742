"""A full disk, told apart from a trial's own failure: it fails every trial after it too, so
the sweep stops on it with one line that names what could not be written and the fix, and the
trials it abandoned are marked failed at once (cvsweep/sweep/loop.py).

A disk is full where an error's chain holds an OSError ENOSPC or EDQUOT (a file of the sweep:
cvsweep/jsonio.py names the file it was writing), SQLite's SQLITE_FULL or PostgreSQL's
disk_full (the study's database)."""

from __future__ import annotations

import errno
import functools
import sqlite3
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn, Optional

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"
POSTGRES_DISK_FULL = "53100"  # its SQLSTATE


@dataclass
class FullDisk:
    """What filled up: the file being written, when the error names one, or the study's database."""

    path: Optional[str] = None
    in_study: bool = False


@dataclass
class DiskFullStop:
    """Why the sweep stopped: what filled up, where, and which trials it abandoned.

    Attributes:
        full: What filled up.
        where: The folder or file the message names when the error names no file.
        storage: The study storage, as shown (password hidden).
        released: Trials marked failed at once: a re-run runs them again.
        held: Trials that could not be marked failed (the database's disk is full too).
    """

    full: FullDisk
    where: str
    storage: str
    released: list = field(default_factory=list)
    held: list = field(default_factory=list)

    def message(self) -> str:
        """The one line the sweep ends with.

        Returns:
            What could not be written, the fix, and what became of the abandoned trials.
        """
        if self.full.in_study:
            place = f"the study storage {self.storage}"
            fix = "free space on its disk, or point hydra.sweeper.storage at a database on another disk"
        else:
            place = self.full.path or self.where
            fix = ("free space on its disk, or point hydra.sweep.dir (the trial folders) at another disk "
                   "(output_root=DIR moves the sweeps and the study storage together)")
        said = f"no space left on the device to write {place}: {fix}"
        if self.released:
            said += f"; {_trials(self.released)} marked failed, so the same command runs {_it(self.released)} again"
        if self.held:
            said += (f"; {_trials(self.held)} could not be marked failed (the database cannot be written): "
                     f"the same command on this host marks {_it(self.held)} failed at once")
        return said


def full_disk_of(err: Optional[BaseException]) -> Optional[FullDisk]:
    """Whether ``err``, or an error it was raised from or while handling, says a disk is full.

    Args:
        err: An exception (None: none).

    Returns:
        What filled up, or None when the error is another one.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in FULL_ERRNOS:
            return FullDisk(path=None if err.filename is None else str(err.filename))
        if isinstance(err, sqlite3.OperationalError) and (
                getattr(err, "sqlite_errorcode", None) == SQLITE_FULL or "database or disk is full" in str(err)):
            return FullDisk(in_study=True)
        if getattr(err, "sqlstate", None) == POSTGRES_DISK_FULL:
            return FullDisk(in_study=True)
        err = err.__cause__ or err.__context__ or getattr(err, "orig", None)
    return None


def exit_on(stop: DiskFullStop) -> NoReturn:
    """End the process for a full disk: its one line on stderr, exit status 1 (a failed run).

    Args:
        stop: What filled up.

    Raises:
        SystemExit: Always, with status 1.
    """
    print(f"cvsweep: {stop.message()}", file=sys.stderr)
    raise SystemExit(1)


def ends_on_full_disk(hook: Callable[..., Any]) -> Callable[..., Any]:
    """A Hydra sweep callback (``hook(self, config, **kwargs)``) that ends the process on a full
    disk in one line, exit 1: Hydra would turn the error into a warning and exit 0.

    Args:
        hook: The callback method.

    Returns:
        The method, guarded.
    """
    @functools.wraps(hook)
    def guarded(self: Any, config: Any, **kwargs: Any) -> Any:
        try:
            return hook(self, config, **kwargs)
        except Exception as err:
            full = full_disk_of(err)
            if full is None:
                raise
        exit_on(DiskFullStop(full, str(config.hydra.sweep.dir), shown_storage(config.hydra.sweeper.storage)))

    return guarded


def shown_storage(storage: Optional[str]) -> str:
    """A study storage as messages name it.

    Args:
        storage: Its URL (None or empty: in memory).

    Returns:
        The URL with its password hidden, or "memory".
    """
    if not storage:
        return "memory"
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def _trials(numbers: list) -> str:
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(str(n) for n in numbers)


def _it(numbers: list) -> str:
    return "it" if len(numbers) == 1 else "them"
