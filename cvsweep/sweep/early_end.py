"""Why a sweep run ended early, carried on its context (cvsweep/sweep/context.py) from the
sweep loop to the end-of-sweep hook: Hydra calls the hook after the sweeper returns, so the
summary of what finished is written first and the process exits with the code afterwards."""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass
class EarlyEnd:
    """The exit status and the one-line message the hook prints."""

    exit_code: int
    message: str


def interrupted(signum: int, exit_code: int) -> EarlyEnd:
    """A SIGINT or SIGTERM stopped the sweep.

    Args:
        signum: The signal.
        exit_code: The shell's status for it (130, 143).

    Returns:
        The early end.
    """
    return EarlyEnd(exit_code, f"the sweep was interrupted ({signal.Signals(signum).name}): the trials in flight "
                               "were stopped and marked failed; run the same command to go on")


def failed_in_a_row(reasons: list, limit: int) -> EarlyEnd:
    """``hydra.sweeper.max_consecutive_failures`` trials failed in a row.

    Args:
        reasons: The failures of the streak, the first first.
        limit: max_consecutive_failures.

    Returns:
        The early end (exit 1).
    """
    return EarlyEnd(1, f"{len(reasons)} trials failed in a row (hydra.sweeper.max_consecutive_failures={limit}), "
                       f"so the sweep stopped; the first of them: {reasons[0]}")


def out_of_time(timeout_s: float, finished: int, n_trials: int) -> EarlyEnd:
    """The sweep's time limit ran out.

    Args:
        timeout_s: hydra.sweeper.timeout_s.
        finished: How many trials the study holds finished.
        n_trials: How many it should.

    Returns:
        The early end (exit 0: what finished is a result).
    """
    return EarlyEnd(0, f"the sweep's time limit (hydra.sweeper.timeout_s={timeout_s:g}) ended it: "
                       f"{finished} of n_trials={n_trials} finished; run the same command to go on")


def over_budget(budget_usd: float, spent: str, finished: int, n_trials: int) -> EarlyEnd:
    """The next trial would pass the sweep's budget.

    Args:
        budget_usd: hydra.sweeper.budget_usd.
        spent: What the study's trials cost, as text (cvsweep/study/cost.py ``Spend.text``).
        finished: How many trials the study holds finished.
        n_trials: How many it should.

    Returns:
        The early end (exit 0: what finished is a result, and the study keeps its spend).
    """
    return EarlyEnd(0, f"the sweep's budget (hydra.sweeper.budget_usd={budget_usd:g}) ended it: the study's trials "
                       f"cost {spent}, and one more would pass it; {finished} of n_trials={n_trials} finished; "
                       "run the same command to go on if the trials in flight came in under the estimate, "
                       "or raise hydra.sweeper.budget_usd")
