"""The sweeps' views and events, kept fresh by one poller for every client.

The poller (a thread, every ``interval`` seconds) starts queued sweeps, reads each active
sweep's files once and turns what changed since the last read into events: status, trial
started, epoch, trial finished, pruned or failed, sweep finished. Fifty clients watching one
sweep cost one read of its files a poll, not fifty. A sweep that ended has a fixed view, read
once and kept; its events are rebuilt from its files when a client first asks (after a
restart, too).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Optional

from cvsweep.service import store
from cvsweep.service.runner import Runner
from cvsweep.service.snapshot import sweep_view

log = logging.getLogger("cvsweep.service")


@dataclass
class EventLog:
    """One sweep's events so far, the view they were derived from, and the streams waiting for more."""

    events: list = field(default_factory=list)  # (id, name, data), ids from 1
    view: Optional[dict] = None  # the view the last events were derived from
    ended: bool = False
    # The streams waiting for the next event: (their event loop, the asyncio.Event to set).
    listeners: set = field(default_factory=set)

    def add(self, name: str, data: dict) -> None:
        """Append an event and wake the waiting streams.

        Args:
            name: The event's name.
            data: Its data.
        """
        self.events.append((len(self.events) + 1, name, data))
        self.wake()

    def wake(self) -> None:
        """Called from the poller's thread: each stream's loop sets its event itself."""
        for loop, event in list(self.listeners):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # its loop has closed (the server is stopping)
                self.listeners.discard((loop, event))

    def after(self, last_id: int) -> list:
        """The events after the one with id ``last_id``.

        Args:
            last_id: The last id a client has seen; negative for all.

        Returns:
            ``(id, name, data)`` tuples.
        """
        return self.events[last_id:] if last_id >= 0 else self.events


def changes(before: Optional[dict], after: dict) -> list[tuple[str, dict]]:
    """The events between two views of one sweep.

    Args:
        before: The earlier view, or None for none yet.
        after: The current view.

    Returns:
        ``(name, data)`` pairs: status, trial started, epoch, trial finished, pruned or failed,
        sweep finished.
    """
    found = []
    old_status = before["status"] if before else None
    if after["status"] != old_status and after["status"] not in store.FINAL:
        found.append(("status", {"status": after["status"]}))
    seen_running = {r["job"]: r for r in (before or {}).get("progress", {}).get("running", [])}
    seen_done = {t["job"] for t in (before or {}).get("trials", [])}
    for trial in after["progress"]["running"]:
        old = seen_running.get(trial["job"])
        if old is None:
            found.append(("trial_started", {"job": trial["job"]}))
        if trial["epoch"] and (old is None or trial["epoch"] > old["epoch"]):
            found.append(("epoch", dict(trial)))
    for trial in after["trials"]:
        if trial["job"] in seen_done:
            continue
        if trial["job"] not in seen_running:
            found.append(("trial_started", {"job": trial["job"]}))
        found.append(_trial_end(trial))
    if after["status"] in store.FINAL:
        found.append(("sweep_finished", {"status": after["status"], "exit_code": after["exit_code"],
                                         "reason": after["reason"], "best": _best_brief(after["best"])}))
    return found


def _trial_end(trial: dict) -> tuple[str, dict]:
    brief = {"job": trial["job"], "status": trial["status"]}
    if trial["status"] == "completed":
        return "trial_finished", {**brief, "objective": trial["objective"], "test_accuracy": trial["test_accuracy"]}
    if trial["status"] == "pruned":
        return "trial_pruned", {**brief, "epoch": trial["epochs_run"], "reason": trial["reason"]}
    return "trial_failed", {**brief, "reason": trial["reason"]}


def _best_brief(best: Optional[dict]) -> Optional[dict]:
    return best and {k: best[k] for k in ("job", "objective", "test_accuracy", "fingerprint")}


class Monitor:
    """The poller: keeps every sweep's view and events fresh for every client.

    Args:
        runner: The runner that starts queued sweeps (ticked at each poll).
        interval: Seconds between polls.
    """

    def __init__(self, runner: Runner, interval: float = 0.5):
        self.runner, self.sweeps, self.interval = runner, runner.sweeps, interval
        self.logs: dict[str, EventLog] = {}
        self.ended_views: dict[str, dict] = {}  # sweeps that ended: their view never changes
        self.encoded: dict[str, tuple[dict, bytes]] = {}  # a view and its JSON
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def start(self) -> None:
        """Start polling in a daemon thread."""
        threading.Thread(target=self._run, daemon=True, name="cvsweep-service-poller").start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a bad file must not end the poller: the next poll tries again
                log.exception("polling the sweeps failed")

    def poll(self) -> None:
        """Start queued sweeps, then refresh each sweep that has not ended."""
        self.runner.tick()
        for sweep_id in self.sweeps.ids():
            with self.lock:
                known = self.logs.get(sweep_id)
                if sweep_id in self.ended_views and (known is None or known.ended):
                    continue
            self.refresh(sweep_id)

    def refresh(self, sweep_id: str) -> Optional[EventLog]:
        """Read a sweep's files now and record the events since the last read.

        Args:
            sweep_id: The sweep's id.

        Returns:
            Its event log, or None for an unknown sweep.
        """
        folder = self.sweeps.folder(sweep_id)
        if folder is None:
            return None
        view = sweep_view(folder)
        with self.lock:
            events = self.logs.setdefault(sweep_id, EventLog())
            if not events.ended:
                for name, data in changes(events.view, view):
                    events.add(name, data)
                events.view = view
                events.ended = view["status"] in store.FINAL
                if events.ended:
                    events.wake()
            if events.ended:
                self.ended_views[sweep_id] = view
            return events

    def view(self, sweep_id: str) -> Optional[dict]:
        """The sweep's view as of the last poll (at most ``interval`` old), or read now.

        Args:
            sweep_id: The sweep's id.

        Returns:
            The view, or None for an unknown sweep.
        """
        with self.lock:
            events = self.logs.get(sweep_id)
            if sweep_id in self.ended_views:
                return self.ended_views[sweep_id]
            if events is not None and events.view is not None:
                return events.view
        events = self.refresh(sweep_id)
        return events.view if events else None

    def view_json(self, sweep_id: str) -> Optional[bytes]:
        """The view as JSON, encoded once per poll rather than once per request.

        With many clients polling, encoding the view is most of a request's cost.

        Args:
            sweep_id: The sweep's id.

        Returns:
            The JSON bytes, as FastAPI's JSONResponse writes them, or None for an unknown sweep.
        """
        view = self.view(sweep_id)
        if view is None:
            return None
        known = self.encoded.get(sweep_id)
        if known is None or known[0] is not view:
            # As FastAPI's JSONResponse writes it.
            known = view, json.dumps(view, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
            self.encoded[sweep_id] = known
        return known[1]

    def events(self, sweep_id: str) -> Optional[EventLog]:
        """The sweep's event log, read now if it has none yet.

        Args:
            sweep_id: The sweep's id.

        Returns:
            The event log, or None for an unknown sweep.
        """
        with self.lock:
            events = self.logs.get(sweep_id)
        return events if events is not None else self.refresh(sweep_id)

    def forget(self, sweep_id: str) -> None:
        """After a cancel: read the sweep again at the next poll.

        Args:
            sweep_id: The sweep's id.
        """
        with self.lock:
            self.ended_views.pop(sweep_id, None)
