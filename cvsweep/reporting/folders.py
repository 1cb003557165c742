"""What a path given to a command means: a trial folder, a trial's result.json, or a sweep
folder (with summary.json, or, before it has one, with trial folders that hold result.json).
``locate`` is the one rule; cvsweep/reporting/given_paths.py says what each command takes from
what it finds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cvsweep.errors import UserError
from cvsweep.layout import RESULT, is_sweep_folder, is_trial_folder

EXPECTED = ("a trial folder (a folder with result.json), a result.json or a sweep folder (a folder with "
            "summary.json, or with trial folders 0, 1, ... that hold result.json)")


class NotATrialOrSweep(UserError):
    """A path that is neither a trial folder, a result.json nor a sweep folder."""


@dataclass(frozen=True)
class Given:
    """What a path means.

    Attributes:
        folder: The trial folder, or the sweep folder.
        is_sweep: Whether ``folder`` is a sweep folder.
    """

    folder: Path
    is_sweep: bool

    @property
    def has_summary(self) -> bool:
        """Whether it is a sweep folder that holds its summary.json."""
        return self.is_sweep and is_sweep_folder(self.folder)


def trial_folders(sweep_dir: Path) -> list[Path]:
    """A sweep's trial folders: Hydra's job folders, named by job number.

    Args:
        sweep_dir: The sweep folder.

    Returns:
        The folders, in launch order (job 2 before job 10).
    """
    folders = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(folders, key=lambda p: int(p.name))


def finished_trial_folders(sweep_dir: Path) -> list[Path]:
    """A sweep's trial folders that hold a result.json, in launch order.

    Args:
        sweep_dir: The sweep folder.

    Returns:
        The folders; empty for a folder that is no sweep folder.
    """
    return [f for f in trial_folders(sweep_dir) if is_trial_folder(f)]


def locate(given: str | Path) -> Given:
    """What ``given`` means.

    Args:
        given: A trial folder, a result.json or a sweep folder, as typed by the user.

    Returns:
        The trial folder (for a trial folder or its result.json) or the sweep folder.

    Raises:
        NotATrialOrSweep: For any other path; the message names it and what is expected.
    """
    path = Path(given)
    if path.is_file() and path.name == RESULT:
        return Given(path.parent, is_sweep=False)
    if path.is_dir() and is_trial_folder(path):
        return Given(path, is_sweep=False)
    if path.is_dir() and (is_sweep_folder(path) or finished_trial_folders(path)):
        return Given(path, is_sweep=True)
    what = "not" if path.exists() else "does not exist; expected"
    raise NotATrialOrSweep(f"{given}: {what} {EXPECTED}")

