"""A trial's progress.json: its latest epoch, written on every epoch wherever the trial trains
(the sweep process, a forked launcher worker), read by the sweep's progress display."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

from cvsweep import layout
from cvsweep.jsonio import read_json, write_json_atomic

log = logging.getLogger("cvsweep.progress")

FILE_NAME = layout.PROGRESS


def epoch_writer(trial_dir: str | Path) -> Callable[[dict], None]:
    """train()'s ``progress`` callback for one trial.

    Each epoch's update (epoch, epochs, seconds and the epoch's metrics) replaces the trial's
    progress.json in one step, stamped with the time; a write that fails is logged, never raised.

    Args:
        trial_dir: The trial's folder.

    Returns:
        The callback, taking one epoch's update.
    """
    path = Path(trial_dir) / FILE_NAME

    def write(update: dict) -> None:
        try:
            write_json_atomic(path, {**update, "updated_at": round(time.time(), 3)})
        except (OSError, ValueError) as err:  # a progress report never costs a trial its training
            log.warning("could not write %s: %s", path, err)

    return write


def read_epoch(trial_dir: str | Path) -> Optional[dict]:
    """The trial's latest epoch, from its progress.json.

    Args:
        trial_dir: The trial's folder.

    Returns:
        The update, or None before its first epoch ends (or when a remote worker's update has
        no whole numbers for ``epoch`` and ``epochs``: the display computes with them).
    """
    try:
        update = read_json(Path(trial_dir) / FILE_NAME)
    except (OSError, ValueError):
        return None
    if not isinstance(update, dict) or not all(isinstance(update.get(key, 1), int) for key in ("epoch", "epochs")):
        return None
    return update if "epoch" in update else None
