"""The sweep loop: keep up to n_jobs trials running until the study holds n_trials finished
ones, as named steps over one ``SweepContext`` (cvsweep/sweep/context.py).

Each turn: note the deadline (``note_deadline``); unless the sweep is stopping
(``SweepContext.stopping``), ask the study for as many trials as there are free slots
(``ask``); start them (``start``); pass an interrupt on to the launcher (``pass_interrupt``);
wait for any to end and tell the study each outcome (``collect``, ``tell``, ``on_failure``);
check the failure rate. At the end, ``finish`` records why the sweep ended early, if it did.
A full disk (``stop_on_full_disk``) ends the sweep with one line and exit status 1.

What the loop promises (the semantics are cvsweep/study/storage.py's):
- ``n_trials`` counts finished trials (completed, pruned, infeasible); failed ones use up
  nothing, so a failure's parameters are replaced by a new trial.
- A success (any outcome but a failure) resets the failure streak; ``max_consecutive_failures``
  failures in a row stop the sweep (exit 1), more than ``max_failure_rate`` of the trials
  told failing raises the first failure.
- SIGINT / SIGTERM (recorded on the context's interrupts) start nothing more; the launcher
  stops the trials in flight, which are told FAIL "interrupted" unless they had finished.
- After ``timeout_s`` nothing new starts; the running trials finish (with a pruner, at
  their next epoch's end).
- With ``budget_usd``, a trial starts only while the study's spend (every run and process,
  cvsweep/study/cost.py) plus an estimate for the trials in flight and the new one (the mean
  cost of the priced trials, each) stays within it; before the first priced trial there is
  no estimate, so the first trials start. Once one more would pass it, nothing new starts,
  the running trials finish, and the sweep ends with one line and exit status 0.
- A full disk (cvsweep/study/full_disk.py) is no trial's failure: it fails every later one
  too. Met by a job, nothing new starts and the trials in flight finish; met by this process
  (the study's database, a file it writes), the jobs in flight are stopped. Either way the
  trials it abandoned are marked failed at once (their parameters asked again, as an
  interrupted trial's), and the sweep ends with one line naming what could not be written.

The loop talks to a launcher through cvsweep/sweep/launchers.py, and to the study through
cvsweep/sweep/study_trials.py, so a test drives it with prepared outcomes.
"""

from __future__ import annotations

import logging
import math
import signal
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Iterator

import optuna
from hydra.core.utils import JobReturn, JobStatus

from cvsweep import compat
from cvsweep.execution.interrupts import SweepInterrupted
from cvsweep.study.cost import usd_text
from cvsweep.study.full_disk import DiskFullStop, FullDisk, exit_on, full_disk_of
from cvsweep.sweep import early_end
from cvsweep.sweep.context import Running, SweepContext
from cvsweep.sweep.launchers import Launcher
from cvsweep.sweep.study_trials import StudyTrials, Told

log = logging.getLogger("hydra_plugins.cvsweep_sweeper.cvsweep_sweeper")


def run_sweep(ctx: SweepContext, trials: StudyTrials, launcher: Launcher) -> None:
    """Run trials until the study holds ``n_trials`` finished ones or the sweep stops.

    Args:
        ctx: The sweep's context; on return, ``ctx.early_end`` says why it ended early.
        trials: The study's side.
        launcher: Starts the jobs.

    Raises:
        Exception: The first failure's, when more than max_failure_rate of the trials failed.
        SystemExit: With status 1 after a full disk, its one line printed.
    """
    timeout_s = ctx.settings.timeout_s
    ctx.deadline = ctx.clock() + timeout_s if timeout_s is not None else None
    ctx.handles.deadline = ctx.deadline
    ctx.spent = trials.spend()  # a resumed or shared study has spent before this run
    if ctx.spent.billed:
        ctx.progress.spent(ctx.spent)
    try:
        with ctx.heartbeat, ctx.interrupts, ctx.progress, _log_errors_unraised():
            while guarded_turn(ctx, trials, launcher):
                pass
        finish(ctx, trials)
    finally:
        ctx.handles.deadline = None
    if ctx.full_disk is not None:  # the summary is not written: there is no room for it
        exit_on(ctx.full_disk)


def guarded_turn(ctx: SweepContext, trials: StudyTrials, launcher: Launcher) -> bool:
    """One ``turn``; a full disk met in this process (the study's database, a file the sweep
    writes) stops the jobs in flight and marks their trials failed at once.

    Args:
        ctx: The sweep's context.
        trials: The study's side.
        launcher: Starts, waits for and stops the jobs.

    Returns:
        Whether trials are still in flight (False: the loop is done).

    Raises:
        Exception: Any error but a full disk, as ``turn`` raised it.
    """
    try:
        return turn(ctx, trials, launcher)
    except Exception as err:
        full = full_disk_of(err)
        if full is None:
            raise
    stop_on_full_disk(ctx, trials, full, ctx.sweep_dir)
    if ctx.running:
        launcher.interrupt()  # their outcome no longer matters: each is marked failed now
    for run in list(ctx.running.values()):
        release(ctx, trials, run)
    ctx.running.clear()
    return False


def turn(ctx: SweepContext, trials: StudyTrials, launcher: Launcher) -> bool:
    """One turn of the loop: ask, start, pass an interrupt on, collect, check the failure rate.

    Args:
        ctx: The sweep's context.
        trials: The study's side.
        launcher: Starts and waits for the jobs.

    Returns:
        Whether trials are still in flight (False: the loop is done).
    """
    note_deadline(ctx)
    start(ctx, trials, launcher, ask(ctx, trials))
    if not ctx.running:
        return False
    pass_interrupt(ctx, launcher)
    collect(ctx, trials, launcher)
    check_failure_rate(ctx)
    return True


def note_deadline(ctx: SweepContext) -> None:
    """Mark the sweep out of time once the deadline has passed, and log it once.

    Args:
        ctx: The sweep's context; sets ``ctx.out_of_time``.
    """
    if ctx.deadline is None or ctx.out_of_time or ctx.clock() < ctx.deadline:
        return
    ctx.out_of_time = True
    log.info("The sweep's time limit (hydra.sweeper.timeout_s=%s) ran out: no new trial starts; %d running finish%s",
             ctx.settings.timeout_s, len(ctx.running),
             " (stopped at their next epoch's end)" if ctx.settings.prunes else "")


def ask(ctx: SweepContext, trials: StudyTrials) -> list:
    """New trials for the free slots: none while stopping, and the study is asked only when a
    trial ended since it was last asked.

    Args:
        ctx: The sweep's context; each trial asked joins its heartbeat.
        trials: The study's side, asked for the trials.

    Returns:
        The trials asked, each beating its heartbeat.
    """
    free = ctx.settings.n_jobs - len(ctx.running)
    if not ctx.changed or free <= 0 or ctx.stopping():
        return []
    wanted = budget_room(ctx, trials, min(free, trials.n_to_ask(ctx.settings.n_trials)))
    asked = [trials.ask() for _ in range(wanted)]
    for trial in asked:
        ctx.heartbeat.add(trial)
    return asked


def budget_room(ctx: SweepContext, trials: StudyTrials, wanted: int) -> int:
    """How many of the trials wanted the budget lets start; when none, the sweep is over budget
    (logged once).

    The study's spend is read again each time: other processes sharing it spend too.

    Args:
        ctx: The sweep's context; sets ``ctx.spent`` and ``ctx.over_budget``.
        trials: The study's side, for its spend.
        wanted: The trials the free slots and n_trials allow.

    Returns:
        How many may start: all of them without ``budget_usd``, or before any priced trial
        ended (nothing to estimate from).
    """
    budget = ctx.settings.budget_usd
    if budget is None or wanted <= 0:
        return wanted
    ctx.spent = trials.spend()
    if ctx.spent.billed:
        ctx.progress.spent(ctx.spent)
    mean = ctx.spent.mean()
    if mean is None and ctx.spent.usd < budget:
        return wanted
    left = budget - ctx.spent.usd - (mean or 0.0) * len(ctx.running)
    # A hair of slack: a sum of float costs that equals the budget fits it.
    fit = 0 if left <= 0 else wanted if mean == 0 else math.floor(left / mean + 1e-9)
    if fit > 0:
        return min(wanted, fit)
    ctx.over_budget = True
    log.info("The sweep's budget (hydra.sweeper.budget_usd=%s) would be passed: %s spent, about %s a trial, "
             "%d running; no new trial starts, the running ones finish", f"{budget:g}", ctx.spent.text(),
             usd_text(mean or 0.0), len(ctx.running))
    return 0


def start(ctx: SweepContext, trials: StudyTrials, launcher: Launcher, asked: list) -> None:
    """Start a job for each trial asked.

    They are in flight on return or, stopped by an interrupt while training in this process,
    told so.

    Args:
        ctx: The sweep's context; the jobs join ``ctx.running``.
        trials: The study's side, which turns the trials into overrides.
        launcher: Starts the jobs.
        asked: The trials from ``ask``.
    """
    overrides = trials.configure(asked)
    first = ctx.next_job
    runs = [Running(trial, first + i, overrides[i]) for i, trial in enumerate(asked)]
    for run in runs:  # before: a local launcher blocks
        ctx.progress.started(run.trial.number, run.job, ctx.sweep_dir / str(run.job))
        if ctx.settings.prunes:
            ctx.handles.attach(run.job, run.trial)  # its job reports each epoch to it
    ctx.next_job += len(runs)
    try:
        futures = launcher.start(overrides, first)
    except SweepInterrupted:  # a local trial, training in this process, was stopped
        for run in runs:
            _ended(ctx, run)
            tell_interrupted(ctx, trials, run)
        ctx.changed = True
        return
    except Exception as err:  # Hydra's own files of a job, written in this process
        full = full_disk_of(err)
        if full is None:
            raise
        stop_on_full_disk(ctx, trials, full, ctx.sweep_dir / str(first))
        for run in runs:
            release(ctx, trials, run)
        return
    ctx.running.update(zip(futures, runs))


def pass_interrupt(ctx: SweepContext, launcher: Launcher) -> None:
    """After a signal, have the launcher stop the jobs in flight, once.

    Args:
        ctx: The sweep's context; sets ``ctx.cancelling``.
        launcher: Stops its jobs.
    """
    if ctx.interrupts.signum is not None and not ctx.cancelling:
        launcher.interrupt()  # its workers cancel their remote jobs and return
        ctx.cancelling = True


def collect(ctx: SweepContext, trials: StudyTrials, launcher: Launcher) -> None:
    """Wait for jobs to end, and tell each one's trial, in job order.

    Args:
        ctx: The sweep's context; the ended jobs leave ``ctx.running``.
        trials: The study's side, told each outcome.
        launcher: Waits for the jobs.
    """
    done = launcher.wait(list(ctx.running))
    ctx.changed = bool(done)
    for future in sorted(done, key=lambda f: ctx.running[f].job):
        run = ctx.running.pop(future)
        tell(ctx, trials, run, job_return(future, run.overrides))


def tell(ctx: SweepContext, trials: StudyTrials, run: Running, ret: JobReturn) -> None:
    """Tell the study a job's outcome; a success resets the failure streak. A full disk, met by
    the job or by the study's database, stops the sweep instead (``stop_on_full_disk``).

    Args:
        ctx: The sweep's context.
        trials: The study's side.
        run: The job that ended.
        ret: Its outcome.
    """
    _ended(ctx, run)
    if ctx.interrupts.signum is not None:
        tell_interrupted(ctx, trials, run, ret)
        return
    full = full_disk_of(_error_of(ret))
    if full is None:
        try:
            told = trials.tell(run.trial, run.job, ret)
        except Exception as err:  # the study's database may be on the full disk
            full = full_disk_of(err)
            if full is None:
                raise
    if full is not None:  # no fault of the trial's: it is released, as an interrupted one
        stop_on_full_disk(ctx, trials, full, ctx.sweep_dir / str(run.job))
        release(ctx, trials, run)
        return
    ctx.told += 1
    if told.cost:
        ctx.spent.add(told.cost)
        ctx.progress.spent(ctx.spent)
    _show(ctx, run, told, ret)
    if told.error is None:
        ctx.streak.clear()
    else:
        on_failure(ctx, ret, told.error)


def stop_on_full_disk(ctx: SweepContext, trials: StudyTrials, full: FullDisk, where) -> None:
    """Stop the sweep for a full disk: nothing new starts, and it ends with one line, exit 1.

    The first full disk met is the one the line names.

    Args:
        ctx: The sweep's context; sets ``ctx.full_disk``.
        trials: The study's side, for its storage's name.
        full: What filled up.
        where: The folder written when the error names no file (a trial's, or the sweep's).
    """
    if ctx.full_disk is None:
        ctx.full_disk = DiskFullStop(full, str(where), trials.storage_shown)


def release(ctx: SweepContext, trials: StudyTrials, run: Running) -> None:
    """Mark a trial the full disk abandoned failed at once, so that a re-run asks its
    parameters again; where the study's database cannot be written either, the trial stays
    with its owner, whom a re-run on this host finds gone at once.

    Args:
        ctx: The sweep's context; the trial joins ``ctx.full_disk``'s released or held.
        trials: The study's side.
        run: The abandoned trial's job.
    """
    _ended(ctx, run)
    reason = "no space left on the device"
    released = trials.release(run.trial, run.job, reason)
    (ctx.full_disk.released if released else ctx.full_disk.held).append(run.trial.number)
    ctx.progress.finished(run.trial.number, "failed", None, reason)


def on_failure(ctx: SweepContext, ret: JobReturn, error: BaseException) -> None:
    """Count a failed trial in the streak and in the failure rate.

    Args:
        ctx: The sweep's context.
        ret: The failed job's outcome.
        error: Its error.
    """
    ctx.failures.append(ret)
    ctx.streak.append(error)


def tell_interrupted(ctx: SweepContext, trials: StudyTrials, run: Running, ret: JobReturn | None = None) -> None:
    """Tell the study about a trial the interrupt stopped.

    It is told FAIL (reason "interrupted ..."), so the next run asks its parameters again.
    One that completed, or was pruned, before the stop reached it keeps its result.

    Args:
        ctx: The sweep's context.
        trials: The study's side.
        run: The stopped job.
        ret: Its outcome, or None when it never returned one.
    """
    if ret is not None and ret.status == JobStatus.COMPLETED or _pruned(ret):
        _show(ctx, run, trials.tell(run.trial, run.job, ret), ret)
        return
    reason = f"interrupted by {signal.Signals(ctx.interrupts.signum).name}"
    trials.fail_interrupted(run.trial, run.job, reason)
    ctx.progress.finished(run.trial.number, "interrupted", None, reason)


def check_failure_rate(ctx: SweepContext) -> None:
    """Raise the first failure when more than max_failure_rate of the trials told failed.

    Args:
        ctx: The sweep's context.

    Raises:
        Exception: The first failure's error, with its traceback.
    """
    if ctx.failures and len(ctx.failures) / ctx.told > ctx.settings.max_failure_rate:
        log.error("Failed %d times out of %d with max_failure_rate=%s.", len(ctx.failures), ctx.told,
                  ctx.settings.max_failure_rate)
        ctx.failures[0].return_value  # re-raises the first failure with its traceback


def finish(ctx: SweepContext, trials: StudyTrials) -> None:
    """Record on the context why the sweep ended early, if it did.

    Args:
        ctx: The sweep's context; sets ``ctx.early_end``.
        trials: The study's side, for the number of finished trials.
    """
    settings = ctx.settings
    if ctx.full_disk is not None:
        ctx.early_end = early_end.EarlyEnd(1, ctx.full_disk.message())  # a failed run
    elif ctx.interrupts.signum is not None:
        ctx.early_end = early_end.interrupted(ctx.interrupts.signum, ctx.interrupts.exit_code)
    elif len(ctx.streak) >= settings.max_consecutive_failures:
        ctx.early_end = early_end.failed_in_a_row(ctx.streak, settings.max_consecutive_failures)
    elif ctx.out_of_time:
        ctx.early_end = early_end.out_of_time(settings.timeout_s, trials.n_finished(), settings.n_trials)
    elif ctx.over_budget:
        ctx.early_end = early_end.over_budget(settings.budget_usd, trials.spend().text(), trials.n_finished(),
                                              settings.n_trials)


def job_return(future: Future, overrides: tuple) -> JobReturn:
    """The job's outcome; a job whose worker process died becomes a failed one.

    Args:
        future: The job's future.
        overrides: The job's overrides, for the failed outcome.

    Returns:
        The job's ``JobReturn``.
    """
    try:
        return future.result()
    except Exception as err:  # BrokenProcessPool: killed by a signal or out of memory
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        error = RuntimeError(f"the trial's worker process failed: {type(err).__name__}: {err}")
        error.__cause__ = err  # a full disk stays one
        ret.return_value = error
        return ret


def _ended(ctx: SweepContext, run: Running) -> None:
    ctx.heartbeat.remove(run.trial)
    ctx.handles.detach(run.job)


@contextmanager
def _log_errors_unraised() -> Iterator[None]:
    """A log file on a full disk (a job's app.log) must not print a traceback for every line
    logged: the loop says what filled up in one line."""
    before, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        yield
    finally:
        logging.raiseExceptions = before


def _error_of(ret: JobReturn) -> BaseException | None:
    outcome = compat.job_outcome(ret)
    return outcome if isinstance(outcome, BaseException) else None


def _pruned(ret: JobReturn | None) -> bool:
    return ret is not None and isinstance(compat.job_outcome(ret), optuna.TrialPruned)


def _show(ctx: SweepContext, run: Running, told: Told, ret: JobReturn) -> None:
    completed = told.state == "completed"
    outcome = compat.job_outcome(ret)
    ctx.progress.finished(run.trial.number, told.state, outcome if completed else None,
                          None if completed else told.error or outcome)  # the reason
