"""The remote executor's HTTP retries, as urllib3 Retry policies mounted on the runpod SDK's
requests session: transient faults (HTTP 408, 429, 5xx, dropped connections, timeouts) are
retried ``retries`` times, or until a deadline, waiting ``backoff_s``, then twice as long each
time, at most ``backoff_max_s``.

A request that may have created something is never sent twice: for a submission (POST /run;
RunPod's API has no idempotency key) only what shows the request was not taken is retried:
failures to connect (nothing was sent) and the answers 408, 429 and 503. A connection that drops
after the request went out, a read timeout, or 500, 502, 504 (the job may exist) end the
submission at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError
from urllib3.util.retry import Retry

from cvsweep.errors import CvsweepError

log = logging.getLogger("cvsweep.runpod")

TRANSIENT_HTTP = (408, 429, 500, 502, 503, 504)
NOT_TAKEN_HTTP = (408, 429, 503)  # answers that say the request was not acted on


class RetriesStopped(CvsweepError):
    """``stop`` was set while waiting between tries."""


class BackoffRetry(Retry):
    """urllib3's Retry with cvsweep's backoff (the first retry waits ``backoff_factor``), an
    optional monotonic ``deadline`` instead of a count, a ``stop`` event that ends a wait, and
    a warning per retry naming the request (``what``)."""

    def __init__(self, *args, what: str = "request", deadline: Optional[float] = None,
                 stop: Optional[threading.Event] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.what, self.deadline, self.stop = what, deadline, stop

    def new(self, **kw) -> "BackoffRetry":
        """The policy after one more try, as urllib3 makes it, keeping cvsweep's settings.

        Args:
            **kw: urllib3's changed counts and history.

        Returns:
            The next ``BackoffRetry``.
        """
        return super().new(what=self.what, deadline=self.deadline, stop=self.stop, **kw)

    def is_exhausted(self) -> bool:
        """Whether no try is left: urllib3's counts are used up, or the deadline has passed.

        Returns:
            True when the request is not tried again.
        """
        return super().is_exhausted() or (self.deadline is not None and time.monotonic() >= self.deadline)

    def get_backoff_time(self) -> float:
        """How long to wait before the next try.

        Returns:
            Seconds: 0 before the first retry's wait, then ``backoff_factor`` doubled per
            earlier failure, at most ``backoff_max``.
        """
        failures = len(self.history)
        return min(self.backoff_factor * 2 ** (failures - 1), self.backoff_max) if failures else 0.0

    def sleep(self, response=None) -> None:
        """Warn about the failed try, then wait the backoff, or until ``stop`` is set.

        Args:
            response: urllib3's last response, unused: the wait ignores Retry-After.

        Raises:
            RetriesStopped: ``stop`` was set during the wait.
        """
        wait = self.get_backoff_time()
        shown = f"{len(self.history)}/{self.total}" if self.deadline is None else f"{len(self.history)}"
        log.warning("%s request: %s; retry %s in %.1fs", self.what, _fault(self.history[-1]), shown, wait)
        if self.stop is not None:
            if self.stop.wait(wait):
                raise RetriesStopped(self.what)
        elif wait > 0:
            time.sleep(wait)


def policy(what: str, retries: int, backoff_s: float, backoff_max_s: float, *, resend_safe: bool = True,
           deadline: Optional[float] = None, stop: Optional[threading.Event] = None) -> BackoffRetry:
    """The retry policy of one request.

    Args:
        what: The request's name in each retry's warning.
        retries: How many times a transient fault is retried (unless ``deadline`` is given).
        backoff_s: The first retry's wait, in seconds; each later one waits twice as long.
        backoff_max_s: The longest wait, in seconds.
        resend_safe: False for a submission: retried only when it was not taken (see the
            module's docstring).
        deadline: A monotonic time to retry until, instead of ``retries`` times.
        stop: An event that, once set, ends a wait with ``RetriesStopped``.

    Returns:
        The policy, for a requests adapter's ``max_retries``.
    """
    return BackoffRetry(
        total=None if deadline is not None else retries,
        read=None if resend_safe else False,  # a read error: the request went out
        redirect=False,
        allowed_methods=None,  # every method: which faults are retried is decided above
        status_forcelist=TRANSIENT_HTTP if resend_safe else NOT_TAKEN_HTTP,
        backoff_factor=backoff_s,
        backoff_max=backoff_max_s,
        raise_on_status=False,  # the last answer goes back to the caller, with its status
        respect_retry_after_header=False,  # backoff_max_s bounds every wait
        what=what, deadline=deadline, stop=stop,
    )


def _fault(attempt) -> str:
    """How the warning names a failed try: ``HTTP 503``, ``Timeout`` or ``ConnectionError``."""
    if attempt.status is not None:
        return f"HTTP {attempt.status}"
    if isinstance(attempt.error, (ConnectTimeoutError, ReadTimeoutError)):
        return "Timeout"
    return "ConnectionError"
