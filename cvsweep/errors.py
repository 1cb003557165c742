"""The package's exceptions share one base, so a caller can catch everything cvsweep raises on
purpose with ``except CvsweepError`` (as ``optuna.exceptions.OptunaError``).

``UserError`` is the message format the project keeps: what is wrong names the key (or field,
or path), the value given and what to do instead. Subclasses keep their own names where a
caller tells them apart (a config problem, a data problem, a remote failure).
"""

from __future__ import annotations

from typing import Any, Optional

_UNSET = object()


class CvsweepError(Exception):
    """Base of every exception cvsweep raises on purpose."""


class UserError(CvsweepError, ValueError):
    """Input the user can fix: names the key, the value given and the fix.

    Args:
        message: The whole message, when it is already written out; or the problem in a few
            words when ``key`` is given.
        key: The config key, request field or path at fault.
        value: The value given (left out of the message when not given).
        fix: What to do instead: the allowed values or the setting to change.
    """

    def __init__(self, message: str, *, key: Optional[str] = None, value: Any = _UNSET,
                 fix: Optional[str] = None) -> None:
        self.key, self.value, self.fix = key, (None if value is _UNSET else value), fix
        parts = [message]
        if key is not None:
            given = "" if value is _UNSET else f"={value!r}"
            parts = [f"{key}{given}: {message}"]
        if fix:
            parts.append(fix)
        super().__init__("; ".join(parts))
