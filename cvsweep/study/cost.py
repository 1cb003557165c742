"""What trials cost: a remote trial's ``cost_usd`` from its result.json (the client prices the
job's billed time with executor.price_per_hour), kept in the trial's record in the study
(``cost_record``), and added up over any set of records (``add_up``): the study's trials, over
every run and every process sharing it, or one run's summary rows.

A local trial costs nothing and has no cost at all (no key, not 0); a remote trial without a
price has ``cost_usd: null``, which the sums count as unknown rather than free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from cvsweep.jsonio import read_json

COST_KEY = "cost_usd"


def cost_record(result: dict) -> dict:
    """A trial's cost as its record carries it.

    Args:
        result: The trial's result.json content.

    Returns:
        ``{}`` for a trial that ran here (nothing to pay), ``{"cost_usd": x}`` for a priced
        remote job and ``{"cost_usd": None}`` for one whose price is not known.
    """
    remote = result.get("remote") if isinstance(result, dict) else None
    if not isinstance(remote, dict):
        return {}
    cost = remote.get(COST_KEY)
    return {COST_KEY: float(cost) if _is_number(cost) and cost >= 0 else None}


def read_cost(result_path: str | Path) -> dict:
    """``cost_record`` of a trial's result.json; a missing or unreadable file gives ``{}``.

    Args:
        result_path: The trial's result.json.

    Returns:
        The cost record (see ``cost_record``).
    """
    try:
        return cost_record(read_json(result_path))
    except (OSError, ValueError):
        return {}


@dataclass
class Spend:
    """What a set of trials cost: the sum over the ``priced`` ones, and how many remote trials
    have no price (``unpriced``)."""

    usd: float = 0.0
    priced: int = 0
    unpriced: int = 0

    @property
    def billed(self) -> bool:
        """Whether any trial ran remotely (so cost is a question at all).

        Returns:
            True when some trial is priced or unpriced.
        """
        return bool(self.priced or self.unpriced)

    def add(self, record: Optional[dict]) -> None:
        """Count one trial record's cost in.

        Args:
            record: A dict that may carry ``cost_usd`` (see ``cost_record``); None counts nothing.
        """
        if not isinstance(record, dict) or COST_KEY not in record:
            return
        cost = record[COST_KEY]
        if _is_number(cost):
            self.usd += float(cost)
            self.priced += 1
        else:
            self.unpriced += 1

    def mean(self) -> Optional[float]:
        """The mean cost of a priced trial.

        Returns:
            USD per priced trial, or None before the first.
        """
        return self.usd / self.priced if self.priced else None

    def text(self) -> str:
        """The spend as a line shows it: ``$0.0123``, ``unknown``, or both.

        Returns:
            The text.
        """
        if not self.unpriced:
            return usd_text(self.usd)
        unknown = f"unknown for {self.unpriced} trial{'s' if self.unpriced != 1 else ''} (no executor.price_per_hour)"
        return f"{usd_text(self.usd)} + {unknown}" if self.priced else f"unknown ({self.unpriced} remote trials, " \
            "no executor.price_per_hour)"

    def fields(self) -> dict:
        """The spend as summary.json and the service give it.

        Returns:
            ``{}`` when no trial ran remotely; else ``cost_usd`` (None when no trial is priced)
            and ``cost_unknown_trials`` (remote trials without a price).
        """
        if not self.billed:
            return {}
        return {COST_KEY: round(self.usd, 6) if self.priced else None, "cost_unknown_trials": self.unpriced}


def add_up(records: Iterable[Optional[dict]]) -> Spend:
    """Add up the cost of trial records (the study's, or summary rows).

    Args:
        records: Dicts that may carry ``cost_usd`` (see ``cost_record``); None is skipped.

    Returns:
        Their spend.
    """
    spend = Spend()
    for record in records:
        spend.add(record)
    return spend


def study_spend(trials: Iterable) -> Spend:
    """What a study's trials cost, from the record each trial keeps (every run and process).

    Args:
        trials: The study's FrozenTrials.

    Returns:
        Their spend.
    """
    from cvsweep.study.storage import RESULT_ATTR

    return add_up(t.user_attrs.get(RESULT_ATTR) for t in trials)


def usd_text(usd: float) -> str:
    """A sum in dollars: cents when it has any, else four decimals (a short trial's cost).

    Args:
        usd: The sum.

    Returns:
        E.g. ``$12.35`` or ``$0.0042``.
    """
    return f"${usd:.2f}" if usd >= 0.995 or usd == 0 else f"${usd:.4f}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fields_text(fields: Optional[dict]) -> Optional[str]:
    """The spend that ``Spend.fields`` gave (summary.json's, the service's), as text.

    Args:
        fields: A dict with ``cost_usd`` and ``cost_unknown_trials``, or without them.

    Returns:
        The text (see ``Spend.text``), or None when no trial ran remotely.
    """
    if not isinstance(fields, dict) or COST_KEY not in fields:
        return None
    usd = fields[COST_KEY]
    priced = _is_number(usd)
    return Spend(float(usd) if priced else 0.0, int(priced), fields.get("cost_unknown_trials") or 0).text()


def cell_text(row: dict) -> str:
    """One trial's cost as a table cell.

    Args:
        row: A summary row (or a service row) that may carry ``cost_usd``.

    Returns:
        ``-`` for a trial that ran here, ``unknown`` without a price, else the dollars.
    """
    if COST_KEY not in row:
        return "-"
    return usd_text(float(row[COST_KEY])) if _is_number(row[COST_KEY]) else "unknown"


def spend_line(run: Optional[dict], study: Optional[dict]) -> Optional[str]:
    """What a sweep's remote trials cost, this run's and the whole study's, in one line.

    Args:
        run: This run's spend fields (summary.json's top level).
        study: The study's (summary.json's ``study``).

    Returns:
        The line, or None when every trial ran here.
    """
    parts = [f"{who} {text}" for who, text in (("this run's trials", fields_text(run)),
                                               ("the whole study's", fields_text(study))) if text]
    if not parts:
        return None
    return ("Cost: " + "; ".join(parts) + " (RunPod's execution and delay time at executor.price_per_hour, an "
            "estimate; RunPod's billing is the record)")
