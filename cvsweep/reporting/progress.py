"""A sweep's live progress: trials finished of the study's target, running and failed, the best
value so far, elapsed time and an estimate of the time left, and each running trial's latest
epoch (read from its progress.json, since trials run in this process or in forked workers).

On a terminal it is a rich Live display that redraws itself from its own thread (a local
trial blocks the sweep's main thread); elsewhere (CI, a file) it prints plain lines: each trial's
start, its epochs as they appear, its end, and a summary line after each end and every
``summary_every_s`` seconds. The sweeper owns it::

    with SweepProgress.for_sweep(config, n_trials, already_finished) as progress:
        progress.started(trial.number, job_idx, trial_dir)
        progress.finished(trial.number, "completed", values)   # or "failed", reason=...
"""

from __future__ import annotations

import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cvsweep.training.progress_file import read_epoch

COMPLETED = "completed"
# What hydra.sweeper.n_trials counts (cvsweep/study/storage.py): failed and interrupted trials are not.
COUNTED = (COMPLETED, "infeasible", "pruned")


@dataclass
class _Running:
    ordinal: int  # k of "trial k of N"
    job_idx: int
    trial_dir: Path
    started_at: float
    epoch_shown: Any = None
    epoch: Optional[dict] = field(default=None)


def live_display_wanted() -> bool:
    """Whether this process's stdout is a terminal.

    rich's test, which FORCE_COLOR and TTY_COMPATIBLE can override.

    Returns:
        True when a live display can be drawn.
    """
    return Console().is_terminal


class SweepProgress:
    """A sweep's progress on the console: a live display on a terminal, else a line per event and poll.

    Use it as a context manager around the sweep; the sweeper calls ``started`` and
    ``finished`` for each trial.

    Args:
        total: The trials the sweep counts towards (n_trials).
        already_finished: Trials a resumed study had already counted.
        objectives: The objectives' names, the primary first.
        directions: Their directions.
        live: Whether to draw a live display; None asks ``live_display_wanted``.
        poll_s: How often the running trials' progress files are read.
        summary_every_s: How often a plain (not live) display prints a summary line.
    """

    def __init__(self, total: int, already_finished: int, objectives: Sequence[str], directions: Sequence[str],
                 live: Optional[bool] = None, poll_s: float = 0.5, summary_every_s: float = 60.0) -> None:
        self.total, self.already_finished = total, already_finished
        self.objective, self.maximize = objectives[0], directions[0] == "maximize"
        self.live = live_display_wanted() if live is None else live
        self.poll_s, self.summary_every_s = poll_s, summary_every_s
        self.running: dict[int, _Running] = {}
        self.durations: list[float] = []
        self.n_started = self.n_finished = self.n_failed = self.n_pruned = 0
        self.best: Optional[tuple[float, int]] = None  # (value, job)
        self.spend: Any = None  # what the study's remote trials cost (cvsweep/study/cost.py's Spend)
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.began = time.monotonic()

    @classmethod
    def for_sweep(cls, config, n_trials: int, already_finished: int, **options: Any) -> "SweepProgress":
        """The progress of a sweep of a composed config.

        Args:
            config: The composed sweep config (its objectives and directions).
            n_trials: The trials the sweep counts towards.
            already_finished: Trials a resumed study had already counted.
            **options: ``live``, ``poll_s``, ``summary_every_s``.

        Returns:
            The progress display, not yet entered.
        """
        from cvsweep.config.objectives import directions_of, objectives_of

        names = [o.name for o in objectives_of(config)]
        return cls(n_trials, already_finished, names, directions_of(config), **options)

    # -- what the sweeper calls ------------------------------------------------------------

    def __enter__(self) -> "SweepProgress":
        self.began = time.monotonic()
        if self.live:
            self._live = Live(get_renderable=self._render, refresh_per_second=2, console=Console())
            self._live.start()
            _route_log_handlers_through_live()
        else:
            self._thread = threading.Thread(target=self._print_every_poll, name="cvsweep-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.live:
            self._live.stop()  # draws the final state once more
            _unroute_log_handlers()
        else:
            self._thread.join()

    def started(self, trial_number: int, job_idx: int, trial_dir: str | Path) -> None:
        """A trial started.

        Args:
            trial_number: Its Optuna trial number.
            job_idx: Its Hydra job number.
            trial_dir: Its folder (whose progress.json is read).
        """
        with self.lock:
            self.n_started += 1
            # The k-th counted trial this one would be; a failed one's successor takes its place.
            ordinal = self.already_finished + self.n_finished + len(self.running) + 1
            self.running[trial_number] = _Running(ordinal, job_idx, Path(trial_dir), time.monotonic())
            if not self.live:
                self._emit(f"{self._name(ordinal)} started: job {job_idx}, Optuna trial {trial_number} "
                           f"({len(self.running)} running)")

    def finished(self, trial_number: int, state: str, values: Any = None, reason: Any = None) -> None:
        """A trial ended; a trial not started here is ignored.

        Only completed, pruned and infeasible trials count towards n_trials.

        Args:
            trial_number: Its Optuna trial number.
            state: The outcome: "completed", or pruned, infeasible, failed or interrupted.
            values: A completed trial's objective value(s).
            reason: Why it did not complete.
        """
        with self.lock:
            trial = self.running.pop(trial_number, None)
            if trial is None:
                return
            took = time.monotonic() - trial.started_at
            self.durations.append(took)
            self.n_finished += state in COUNTED
            if state == COMPLETED and values is not None:
                value = float(values[0] if isinstance(values, (list, tuple)) else values)
                if self.best is None or (value > self.best[0] if self.maximize else value < self.best[0]):
                    self.best = (value, trial.job_idx)
                outcome = f"completed in {_clock(took)}: {self.objective}={value:.4f}"
            else:
                self.n_failed += state not in COUNTED
                self.n_pruned += state == "pruned"
                outcome = f"{state} after {_clock(took)}: {reason}"
            if not self.live:
                self._print_epoch(trial)  # its last epoch, if the poll has not shown it yet
            self._emit(f"{self._name(trial.ordinal)} (job {trial.job_idx}) {outcome}")
            if not self.live:
                self._emit(self._summary_line())

    def spent(self, spend: Any) -> None:
        """What the study's remote trials cost so far; the summary line shows it from now on.

        Args:
            spend: A cvsweep/study/cost.py ``Spend``.
        """
        with self.lock:
            self.spend = spend

    # -- plain lines ---------------------------------------------------------------------

    def _print_every_poll(self) -> None:
        last_summary = time.monotonic()
        while not self.stop.wait(self.poll_s):
            with self.lock:
                for trial in list(self.running.values()):
                    self._print_epoch(trial)
                if time.monotonic() - last_summary >= self.summary_every_s:
                    self._emit(self._summary_line())
                    last_summary = time.monotonic()

    def _print_epoch(self, trial: _Running) -> None:
        epoch = self._refresh_epoch(trial)
        if epoch is None or epoch["epoch"] == trial.epoch_shown:
            return
        trial.epoch_shown = epoch["epoch"]
        metric = self._epoch_metric(epoch)
        shown = f", {metric[0]}={metric[1]:.4f}" if metric else ""
        self._emit(f"{self._name(trial.ordinal)} (job {trial.job_idx}): epoch {epoch['epoch']}/{epoch.get('epochs', '?')}"
                   f"{shown}")

    def _emit(self, line: str) -> None:
        if self.live:  # printed above the live display
            self._live.console.print(line, markup=False, highlight=False)
        else:
            print(f"[progress] {line}", file=sys.stdout, flush=True)

    def _summary_line(self) -> str:
        with self.lock:
            now = time.monotonic()
            finished = self.already_finished + self.n_finished
            pruned = f"{self.n_pruned} pruned, " if self.n_pruned else ""
            line = (f"{finished} of {self.total} trials finished ({pruned}{self.n_failed} failed this run), "
                    f"{len(self.running)} running")
            if self.best is not None:
                line += f"; best so far {self.objective}={self.best[0]:.4f} (job {self.best[1]})"
            line += self._spent_text("; ")
            left = self._seconds_left(now)
            return line + f"; elapsed {_clock(now - self.began)}, " + (
                f"about {_clock(left)} left" if left is not None else "time left not known yet")

    # -- the live display ------------------------------------------------------------------

    def _render(self) -> Group:
        with self.lock:
            now = time.monotonic()
            for trial in self.running.values():  # the estimate may extrapolate from their epochs
                self._refresh_epoch(trial)
            finished = self.already_finished + self.n_finished
            head = Table.grid(padding=(0, 1))
            head.add_row(
                Text("Sweep", style="bold"), ProgressBar(total=max(self.total, 1), completed=finished, width=30),
                f"{finished} of {self.total} trials finished", f"· {len(self.running)} running",
                (f"· {self.n_pruned} pruned · " if self.n_pruned else "· ") + f"{self.n_failed} failed",
            )
            left = self._seconds_left(now)
            best = f"{self.objective} {self.best[0]:.4f} (job {self.best[1]})" if self.best else "none yet"
            facts = (f"best so far: {best}{self._spent_text(' · ')} · elapsed {_clock(now - self.began)} · "
                     + (f"about {_clock(left)} left" if left is not None else "time left: estimating"))
            parts: list = [head, Text(facts)]
            if self.running:
                table = Table("trial", "job", "epoch", "val metric", "running for", box=None, padding=(0, 2))
                for trial in sorted(self.running.values(), key=lambda t: t.ordinal):
                    epoch = trial.epoch
                    metric = self._epoch_metric(epoch) if epoch else None
                    table.add_row(*map(Text, (  # Text: a worker's progress.json is never read as rich markup
                        f"{trial.ordinal} of {self.total}", str(trial.job_idx),
                        f"{epoch['epoch']}/{epoch.get('epochs', '?')}" if epoch else "starting",
                        f"{metric[0]}={metric[1]:.4f}" if metric else "-", _clock(now - trial.started_at),
                    )))
                parts.append(table)
            return Group(*parts)

    # -- shared ------------------------------------------------------------------------------

    def _spent_text(self, before: str) -> str:
        if self.spend is None or not self.spend.billed:
            return ""
        return f"{before}spent {self.spend.text()}"

    def _name(self, ordinal: int) -> str:
        return f"trial {ordinal} of {self.total}"

    def _refresh_epoch(self, trial: _Running) -> Optional[dict]:
        epoch = read_epoch(trial.trial_dir)
        if epoch is not None:
            trial.epoch = epoch
        return trial.epoch

    def _epoch_metric(self, epoch: dict) -> Optional[tuple[str, float]]:
        """The objective when Keras reports it per epoch (val_accuracy, val_loss), else
        val_accuracy."""
        for name in (self.objective, "val_accuracy", "val_loss"):
            if isinstance(epoch.get(name), (int, float)):
                return name, float(epoch[name])
        return None

    def _seconds_left(self, now: float) -> Optional[float]:
        """Work left over the trials in flight: each running trial's expected rest plus every
        trial not started yet, at the mean duration of this run's finished trials (before the
        first ends, extrapolated from the running trials' epochs)."""
        to_finish = self.total - self.already_finished - self.n_finished
        if to_finish <= 0:
            return 0.0
        per_trial = statistics.fmean(self.durations) if self.durations else self._extrapolated(now)
        if per_trial is None:
            return None
        rest = sum(max(0.0, per_trial - (now - t.started_at)) for t in self.running.values())
        waiting = max(0, to_finish - len(self.running))
        return (rest + waiting * per_trial) / max(1, len(self.running))

    def _extrapolated(self, now: float) -> Optional[float]:
        guesses = [(now - t.started_at) * t.epoch["epochs"] / t.epoch["epoch"]
                   for t in self.running.values() if t.epoch and t.epoch.get("epochs") and t.epoch["epoch"] > 0]
        return statistics.fmean(guesses) if guesses else None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _route_log_handlers_through_live() -> None:
    """Log handlers that write to the terminal (Hydra's, created before the display) write
    through Live's redirected stdout and stderr while it runs, so their lines appear above the
    display instead of through it. (Handlers created while it runs, a local job's, get the
    redirected streams from the start.)"""
    proxies = {s.rich_proxied_file: s for s in (sys.stdout, sys.stderr) if hasattr(s, "rich_proxied_file")}
    for handler in _stream_handlers():
        if handler.stream in proxies:
            handler.setStream(proxies[handler.stream])


def _unroute_log_handlers() -> None:
    """Every handler that writes through Live's redirected streams, back to the terminal."""
    for handler in _stream_handlers():
        original = getattr(handler.stream, "rich_proxied_file", None)
        if original is not None:
            handler.setStream(original)


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    return [h for logger in loggers for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
