"""A run's result: what ``train`` returns, a worker sends back and a trial keeps as
``result.json``. One record, shaped here only: ``Result`` names its keys (the keys, their
order and their nesting are result.json's), ``new_result`` and ``failed_result`` make one,
``fail`` marks one failed. It stays a plain dict, so it is JSON as it is and every reader
(summary, compare, plots, objectives) reads the file and the record alike.
"""

# No ``from __future__ import annotations`` here: with it, Python 3.11's TypedDict cannot
# see NotRequired, and REQUIRED_KEYS would name every key.
import logging
import math
from typing import Any, NotRequired, Optional, TypedDict

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import SCHEMA_VERSION
from cvsweep.training import provenance
from cvsweep.training.failures import Failure

log = logging.getLogger("cvsweep.train")  # where "run failed" has always been logged

# pruned: the sweep's pruner stopped the run after an epoch (cvsweep/study/pruning.py); its
# metrics hold what it trained (epochs_run, history), nothing was evaluated or kept.
COMPLETED, FAILED, PRUNED = "completed", "failed", "pruned"


class FailureRecord(TypedDict):
    """result.json's ``failure``: the failure's code and its problems."""

    code: str  # one of cvsweep/training/failures.py's codes
    problems: list[str]


class Result(TypedDict):
    """The keys in result.json's order; the NotRequired ones appear when they apply."""

    schema_version: int
    fingerprint: str  # of ``config``; a worker echoes the one it was sent
    config: dict  # the run config exactly as it ran (data pinned)
    status: str  # COMPLETED, FAILED or PRUNED
    reason: Optional[str]  # why it failed or was pruned; None when completed
    metrics: dict  # val/test loss and accuracy, history, epochs_run, params, timings
    data: dict  # the splits' sizes and shapes, the source's sha256 (data.Splits.describe)
    executed_on: dict  # provenance.host(), plus device, executor and worker_id
    versions: dict  # provenance.versions() where it trained
    diagnostics: NotRequired[dict]  # completed runs (cvsweep/training/diagnostics.py)
    health: NotRequired[dict]  # completed runs (cvsweep/training/health.py)
    # Completed runs asked to keep their model: {"path", "bytes", "sha256"} of model.keras
    # beside result.json, or {"missing": why} (cvsweep/training/artifact.py).
    model: NotRequired[dict]
    infeasible: NotRequired[bool]  # failed runs: the configuration itself cannot train
    failure: NotRequired[FailureRecord]  # failed runs
    # Pruned runs: {"epoch"} it stopped after; the trial adds the "value" the pruner saw there
    # and the "pruner" (cvsweep/sweep/trial.py).
    pruned: NotRequired[dict]
    remote: NotRequired[dict]  # executor=runpod: endpoint, job, worker and timings
    client_versions: NotRequired[dict]  # executor=runpod: the versions on the sending side
    fallback: NotRequired[dict]  # trained here after a remote error: {"used", "remote_error"}
    trial: NotRequired[dict]  # added by the trial: job, overrides, choices, objectives


# What every result has; an answer without them is not a cvsweep result.
REQUIRED_KEYS = Result.__required_keys__


def new_result(run_config: dict) -> Result:
    """A result before training: what will run, where, on which versions.

    It is completed until ``fail`` (or ``mark_pruned``) says otherwise.

    Args:
        run_config: The plain run config.

    Returns:
        The result, with its fingerprint, host and versions and empty metrics and data.
    """
    return Result(
        schema_version=SCHEMA_VERSION,
        fingerprint=fingerprint(run_config),
        config=run_config,
        status=COMPLETED,
        reason=None,
        metrics={},
        data={},
        executed_on=provenance.host(),
        versions=provenance.versions(),
    )


def failed_result(run_config: dict, failure: Failure) -> Result:
    """The result of a run that never trained (a refused config, a lost job, a killed process).

    Args:
        run_config: The plain run config.
        failure: Why it failed.

    Returns:
        A failed result.
    """
    return fail(new_result(run_config), failure)


def fail(result: Result, failure: Failure) -> Result:
    """Mark ``result`` failed, for ``failure``'s reason, and log it.

    ``infeasible``: the configuration itself cannot train (it diverges, overruns its time
    budget, cannot be built, is too big for the memory), an answer a sweep counts and its
    sampler learns to avoid; not so for data that could not be loaded, a run that was lost or an
    internal error (see cvsweep/sweep/trial.py).

    Args:
        result: The result, changed in place.
        failure: Why it failed.

    Returns:
        ``result``.
    """
    log.warning("run failed: %s", failure.reason)
    result.update(status=FAILED, reason=failure.reason, infeasible=failure.infeasible, failure=failure.to_json())
    return result


def mark_pruned(result: Result, epoch: int) -> Result:
    """Mark ``result`` pruned: the sweep's pruner stopped it after ``epoch``.

    Args:
        result: The result, changed in place.
        epoch: The last epoch it trained.

    Returns:
        ``result``.
    """
    log.info("run pruned after epoch %d", epoch)
    result.update(status=PRUNED, reason=f"pruned after epoch {epoch}: the sweep's pruner found it behind the other trials",
                  pruned={"epoch": epoch})
    return result


def is_pruned(result: Result) -> bool:
    """Whether the sweep's pruner stopped the run.

    Args:
        result: A result.

    Returns:
        True when its status is ``pruned``.
    """
    return result["status"] == PRUNED


def is_completed(result: Result) -> bool:
    """Whether the run completed.

    Args:
        result: A result.

    Returns:
        True when its status is ``completed``.
    """
    return result["status"] == COMPLETED


def is_result(value: Any) -> bool:
    """Whether ``value`` (a worker's answer) has the shape of a result.

    Args:
        value: Anything.

    Returns:
        True for a dict with every required key.
    """
    return isinstance(value, dict) and REQUIRED_KEYS <= value.keys()


def finite_number(value: Any) -> Optional[float]:
    """A number from outside (a worker's report) as a finite float.

    Args:
        value: Anything.

    Returns:
        The float, or None for anything else: a string, a bool, NaN, an integer too large for a
        float.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def finite_or_none(value) -> Optional[float]:
    """A metric as JSON can hold it: JSON has no NaN or infinity, so a diverged one is null.

    Args:
        value: A number.

    Returns:
        It as a float, or None when not finite.
    """
    value = float(value)
    return value if math.isfinite(value) else None
