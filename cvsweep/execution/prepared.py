"""A trial as the executors get it: prepared once in the sweep process (cvsweep/sweep/trial.py
``prepare``), then run by an executor wherever it trains.

``PreparedTrial`` carries the typed config, its plain run config (the executors' and the
worker's input, with the data's sha256 pinned where the data can be read here) and the data's
identity and shape, so that nothing after preparation reads the data again to learn them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union


@dataclass(frozen=True)
class DataIdentity:
    """What the sweep process knows of a trial's data without training on it.

    Attributes:
        sha256: The content's hash, where the data was read here; None for a download or
            data that lives on the worker.
        shape: One example's shape ([h, w, c] for images, [sequence_length] for text); None
            where nothing needed it.
    """

    sha256: Optional[str] = None
    shape: Optional[tuple[int, ...]] = None


@dataclass(frozen=True)
class PreparedTrial:
    """One trial, ready to run.

    Attributes:
        run_config: The resolved run config as plain data, data pinned: what an executor
            trains and the fingerprint covers.
        config: The typed config it came from (the composed config), or None where the trial
            was made from plain data.
        data: The data's identity and shape, obtained once.
    """

    run_config: dict
    config: Any = None
    data: DataIdentity = DataIdentity()


def prepared_of(trial: Union[PreparedTrial, dict]) -> PreparedTrial:
    """``trial`` as a PreparedTrial.

    Args:
        trial: A prepared trial, or a plain run config (a trial whose data nobody looked at).

    Returns:
        The prepared trial itself, or one holding the run config alone.
    """
    return trial if isinstance(trial, PreparedTrial) else PreparedTrial(run_config=trial)
