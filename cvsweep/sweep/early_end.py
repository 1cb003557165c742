"""Why a sweep run ended early, handed from the sweeper to the end-of-sweep hook: Hydra calls
the hook after the sweeper returns, so the summary of what finished is written first and the
process exits with the code afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class EarlyEnd:
    exit_code: int
    message: str


_pending: Optional[EarlyEnd] = None


def end_early(exit_code: int, message: str) -> None:
    global _pending
    _pending = EarlyEnd(exit_code, message)


def take() -> Optional[EarlyEnd]:
    """The pending early end, once (a later sweep in the same process starts clean)."""
    global _pending
    pending, _pending = _pending, None
    return pending
