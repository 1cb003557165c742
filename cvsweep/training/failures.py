"""Why a run failed, as a caller can act on it: ``{"code", "problems"}`` plus ``infeasible``.

Every exception a run can raise is put in one of a few classes, so that nothing reaches a
caller as a bare traceback: a local trial always gets a ``result.json`` and a worker always
answers with a structured failure. The class decides ``infeasible`` (cvsweep/sweep/trial.py): a
configuration that cannot train is an answer the sweep counts; data that could not be read
or a fault of ours is not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from cvsweep.config.schema import ConfigError
from cvsweep.data.sources import DataError
from cvsweep.models.architectures import ModelError

log = logging.getLogger("cvsweep.train")

INVALID_CONFIG = "invalid_config"  # the configuration is refused or cannot be built: infeasible
DATA_ERROR = "data_error"  # the data could not be read: not about the configuration
OUT_OF_MEMORY = "out_of_memory"  # the model does not fit: infeasible once a model exists
DIVERGED = "diverged"
TIME_BUDGET = "time_budget_exceeded"
INTERNAL_ERROR = "internal_error"  # a fault of cvsweep or a library: not about the configuration
INTERRUPTED = "interrupted"
REMOTE_ERROR = "remote_error"
CONSTRAINT = "constraint"  # the model misses a study constraint before training: infeasible

# The stage of train() an exception came from (train() reports them as it goes).
DATA, MODEL, FIT = "data", "model", "fit"
# An exception's text can echo a whole input (a 60 KB path): keep messages readable.
MAX_MESSAGE = 500


@dataclass
class Failure:
    """A failed run's code, reason, and whether the study records it as infeasible (an answer)."""

    code: str
    reason: str
    infeasible: bool

    def to_json(self) -> dict:
        """The failure as result.json's ``failure`` records it.

        Returns:
            ``{"code", "problems"}``.
        """
        return {"code": self.code, "problems": [self.reason]}


def classify(err: Exception, stage: str, params: Optional[int] = None) -> Failure:
    """The failure an exception raised in ``stage`` of a run stands for.

    Args:
        err: The exception.
        stage: ``DATA``, ``MODEL`` or ``FIT``.
        params: The model's parameter count, when it was built.

    Returns:
        The failure: an invalid config, out of memory, a data error or an internal error (logged).
    """
    if isinstance(err, (ConfigError, ModelError)):
        return Failure(INVALID_CONFIG, str(err), infeasible=True)
    if _out_of_memory(err):
        model = f"the model has {params:,} parameters; " if params is not None else ""
        return Failure(
            OUT_OF_MEMORY,
            f"out of memory while {_DOING[stage]} ({_describe(err)}); {model}use a smaller batch_size, fewer "
            "filters, dense_units or conv layers, a smaller image_size, or lower training.max_params / "
            "training.max_activation_mb so that such models are refused before they are built",
            infeasible=stage != DATA,  # a model too big is an answer; data too big is not
        )
    if isinstance(err, DataError):
        return Failure(DATA_ERROR, str(err)[:MAX_MESSAGE], infeasible=False)
    if stage == DATA:  # an unreadable file, a bad pickle, a path the OS refuses
        return Failure(DATA_ERROR, f"could not load the data: {_describe(err)}", infeasible=False)
    log.error("internal error while %s", _DOING[stage], exc_info=err)
    return Failure(INTERNAL_ERROR, f"internal error while {_DOING[stage]}: {_describe(err)}", infeasible=False)


_DOING = {DATA: "loading the data", MODEL: "building the model", FIT: "training"}


def _out_of_memory(err: Exception) -> bool:
    # By name: TensorFlow's class, without importing TensorFlow to look at it.
    return isinstance(err, MemoryError) or type(err).__name__ == "ResourceExhaustedError"


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:MAX_MESSAGE]}" if text else type(err).__name__
