"""The Optuna study a sweep runs in: opening it, resuming it after a crash, and sharing it
between several sweep processes.

Semantics (docs/guides/resume.md says the same):
- A sweep stops when the study holds ``n_trials`` *finished* trials (completed, pruned, or
  infeasible: a configuration that cannot train is an answer too), counting earlier runs of
  the same command and every other process on the same study. Failed trials (remote errors,
  lost workers, data that could not be loaded) are recorded but use up nothing: a corrected
  re-run after a broken first attempt still runs ``n_trials``. Re-running a finished sweep
  runs nothing.
- A trial whose sweep process died, or that a Ctrl-C or SIGTERM stopped, is *interrupted*:
  it is marked FAIL and its parameters are asked again as a new trial (Optuna's
  RetryHeartbeatStaleTrialCallback, at most MAX_RETRIES times). A dead process's trial is
  found at once when it ran on this host, or by its stale heartbeat (any host).
- A seeded sampler is re-seeded for every trial from (seed, trial number), so a re-run or a
  second process never asks the parameters an earlier one asked, and the same study history
  still gives the same suggestions.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import socket
import threading
import time
import warnings
from typing import Any, Optional

import numpy as np
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from cvsweep import compat
from cvsweep.study.full_disk import full_disk_of

log = logging.getLogger("cvsweep.study")


def quiet_experimental_warnings() -> None:
    """Heartbeats, stale-trial failing and its retry callback are marked experimental, unchanged
    since Optuna 2.9; the warning would print on every trial. Installed at import and again when
    a storage opens: Hydra imports its plugins, and so this module, inside catch_warnings,
    which drops a filter added meanwhile."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"(optuna|cvsweep)\.")


quiet_experimental_warnings()

MAX_RETRIES = 2
OWNER_ATTR = "cvsweep.owner"
RESULT_ATTR = "cvsweep.result"
FIXED_ATTR = "cvsweep.fixed"  # the command line's plain values, as the sweeper passed them


def open_storage(url: str, heartbeat_interval: int, grace_period: int) -> RDBStorage:
    """Open a study storage whose trials beat a heartbeat.

    A trial whose last heartbeat is older than grace_period belongs to a dead process.
    Processes that open a new database at the same moment race to create Optuna's tables; the
    loser's CREATE fails on a unique constraint and simply opens what the winner made. SQLite
    runs in write-ahead-log mode.

    Args:
        url: The database URL.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds after which a trial without a heartbeat is taken for dead.

    Returns:
        Optuna's RDBStorage.

    Raises:
        sqlalchemy.exc.IntegrityError: Creating the tables still failed on the third try.
    """
    from sqlalchemy.exc import IntegrityError

    quiet_experimental_warnings()
    for attempt in range(3):
        try:
            storage = RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )
            break
        except IntegrityError:
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))
    if storage.engine.dialect.name == "sqlite":
        _write_ahead(storage.engine)
        # Closed connections let SQLite fold the log back into the file and delete its -wal and
        # -shm files; a process that ends without closing them leaves both beside the database.
        atexit.register(storage.engine.dispose)
    return storage


def create_or_load(storage: Optional[RDBStorage], study_name: Optional[str], **options: Any) -> optuna.Study:
    """The study ``study_name`` in ``storage``, created when it is not there, without Optuna's
    "A new study created" / "Using an existing study" lines: the sweep says "Study X: N trials
    so far" itself (cvsweep/sweep/sweeper.py).

    Args:
        storage: The opened storage (None: in memory).
        study_name: The study's name.
        **options: ``optuna.create_study``'s other arguments (directions, sampler, pruner).

    Returns:
        The study.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True, **options)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _write_ahead(engine) -> None:
    """SQLite in write-ahead-log mode: a commit appends to the log and waits for one fsync,
    where SQLite's default rollback journal creates, syncs and deletes a journal file and syncs
    the database too. A trial commits several times (asked, claimed, a heartbeat, its record,
    its model, told), so with the journal the syncing took much of the sweep process's own
    time per trial. Every commit is still on disk before it returns (synchronous=FULL: a kill
    or a power cut loses nothing committed). The mode stays with the file: optuna-dashboard and
    other readers open it as before, and several processes on one file work as before."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    engine.dispose()  # the connections Optuna opened while setting up get the pragmas too


def recover_interrupted(study: optuna.Study, grace_period: float = 60) -> list[int]:
    """Fail the running trials whose process is dead and ask their parameters again.

    A trial that was asked but never claimed (its process died in between, so it has no owner
    and never had a heartbeat) is dead once it is older than ``grace_period``.

    Args:
        study: The study.
        grace_period: Seconds after which an unclaimed trial is taken for dead.

    Returns:
        The numbers of the trials failed, in the order they were found.
    """
    now = datetime.datetime.now()  # Optuna stamps trials with naive local time
    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER_ATTR)
        if owner is None and t.datetime_start and (now - t.datetime_start).total_seconds() > grace_period:
            dead.append((t.number, compat.trial_id(t), "interrupted: its sweep process died before claiming it"))
        elif owner is not None and _owner_is_dead(owner):
            dead.append((t.number, compat.trial_id(t), f"interrupted: sweep process {owner['pid']} on {owner['host']} is gone"))
    interrupted = [
        number for number, trial_id, reason in dead
        if fail_interrupted(study, optuna.Trial(study, trial_id), {"reason": reason})
    ]
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    optuna.storages.fail_stale_trials(study)  # any host: a heartbeat older than the grace period
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    interrupted += sorted(after - before)
    for number in interrupted:
        log.warning("trial %d was interrupted (its sweep process died): marked failed, its parameters are asked again",
                    number)
    return interrupted


def fail_interrupted(study: optuna.Study, trial: optuna.Trial, record: dict) -> bool:
    """Mark a trial that was stopped from outside FAIL, and ask its parameters again.

    Args:
        study: The study.
        trial: The trial.
        record: Its reason and where its result lies, stored with it.

    Returns:
        True when it was failed here; False when another process was first.
    """
    try:  # the record first: a finished trial takes no more attributes
        trial.set_user_attr(RESULT_ATTR, record)
        study.tell(trial, state=TrialState.FAIL)
    except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    frozen = next(t for t in study.get_trials(deepcopy=True) if t.number == trial.number)  # the callback edits it
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, frozen)
    return True


def _owner_is_dead(owner: dict) -> bool:
    """Only a process on this host can be checked directly; others go by heartbeat."""
    return owner.get("host") == socket.gethostname() and not _alive(owner.get("pid"))


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def interrupted_numbers(trials: list[FrozenTrial]) -> set[int]:
    """The trials whose process died and whose parameters were asked again.

    Args:
        trials: The study's trials.

    Returns:
        Their numbers.
    """
    return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


# A configuration that cannot train (it diverged, overran its time budget, or cannot be
# built) is an answer about that configuration. Optuna has no state for it, and its samplers
# never see FAIL trials: TPE keeps proposing such a region, failure after failure. PRUNED is the state TPE ranks below every completed trial,
# so such a trial is told as PRUNED; its record says "infeasible" and why.
INFEASIBLE = TrialState.PRUNED
# What n_trials counts: trials that taught the sampler something about their configuration.
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def n_counted(trials: list[FrozenTrial]) -> int:
    """Count the finished trials (completed, pruned, infeasible); failed ones use up nothing
    of n_trials.

    Args:
        trials: The study's trials.

    Returns:
        How many are finished.
    """
    return sum(1 for t in trials if t.state in FINISHED_STATES)


def is_infeasible(trial: FrozenTrial) -> bool:
    """Whether a trial was told infeasible (a configuration that cannot train), not pruned.

    Args:
        trial: A study trial.

    Returns:
        True for an infeasible trial.
    """
    return trial.state == INFEASIBLE and bool((trial.user_attrs.get(RESULT_ATTR) or {}).get("infeasible"))


def n_to_ask(study: optuna.Study, n_trials: int) -> int:
    """How many more trials this process should start.

    Args:
        study: The study.
        n_trials: The finished trials the sweep asks for.

    Returns:
        ``n_trials`` less the trials finished and those running now (in any process), at least 0.
    """
    trials = study.get_trials(deepcopy=False)
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return max(0, n_trials - n_counted(trials) - running)


def trial_seed(seed: int, number: int) -> int:
    """A sampler seed of its own for each trial number, derived from the sweep's seed.

    Args:
        seed: The sweep's seed.
        number: The trial number.

    Returns:
        The trial's seed.
    """
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def claim(trial: optuna.Trial) -> None:
    """Record which process runs the trial, so a re-run can tell whether it is still alive.

    Args:
        trial: The trial just asked.
    """
    trial.set_user_attr(OWNER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})


class Heartbeat:
    """Beats every ``interval`` seconds for each running trial of this process, from the moment
    it is added until it is removed (Optuna beats only inside optimize()). Use as a context:
    the thread stops at its end."""

    def __init__(self, storage: Optional[RDBStorage], interval: int):
        self.storage, self.interval = storage, interval
        self.trials: dict[int, optuna.Trial] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat_every_interval, name="cvsweep-heartbeat", daemon=True)

    def add(self, trial: optuna.Trial) -> None:
        """Beat for a trial from now on, starting at once.

        Args:
            trial: A trial this process runs.
        """
        with self.lock:
            self.trials[compat.trial_id(trial)] = trial
        self._beat([trial])  # at once: the trial is alive before its first interval ends

    def remove(self, trial: optuna.Trial) -> None:
        """Stop beating for a trial.

        Args:
            trial: A trial that ended.
        """
        with self.lock:
            self.trials.pop(compat.trial_id(trial), None)

    def __enter__(self) -> "Heartbeat":
        if self.storage is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _beat_every_interval(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                trials = list(self.trials.values())
            try:
                self._beat(trials)
            except Exception as err:  # the loop meets the full disk itself, and stops the sweep
                if full_disk_of(err) is None:
                    raise

    def _beat(self, trials: list) -> None:
        if self.storage is not None:
            for trial in trials:
                self.storage.record_heartbeat(compat.trial_id(trial))


def check_storage(sweeper) -> None:
    """Open the study's storage now, so a wrong URL, a missing driver or an unreachable
    database fails before any trial; SQLite's folder is created.

    Args:
        sweeper: The ``hydra.sweeper`` config.

    Raises:
        ConfigError: Invalid heartbeat settings, or a storage that cannot be opened; the
            message names the key, the value and the fix.
    """
    from cvsweep.config.schema import ConfigError

    interval, grace = sweeper.heartbeat_interval, sweeper.grace_period
    if not (isinstance(interval, int) and interval > 0 and isinstance(grace, int) and grace > interval):
        raise ConfigError(
            f"hydra.sweeper.heartbeat_interval={interval}, hydra.sweeper.grace_period={grace}: "
            "allowed are whole seconds with 0 < heartbeat_interval < grace_period")
    if sweeper.storage:
        check_storage_url(sweeper.storage, interval, grace)


def check_storage_url(storage: str, heartbeat_interval: int = 60, grace_period: int = 120, *,
                      key: str = "hydra.sweeper.storage", value: Optional[str] = None,
                      elsewhere: str = "point hydra.sweeper.storage at another database") -> None:
    """Open a study storage and close it again, so that a wrong URL, a missing driver, an
    unreachable database or a file that is no database is refused in one line before any work;
    SQLite's folder is created.

    Args:
        storage: The database URL.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds after which a trial without a heartbeat is taken for dead.
        key: The setting the message names (the command's, or the service's).
        value: Its value, where it is not the URL itself (the service's outputs root).
        elsewhere: The fix that moves the storage, for the message.

    Raises:
        ConfigError: The storage cannot be opened; the message names the key, the value and the fix.
    """
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from cvsweep.config.schema import ConfigError

    try:
        url = make_url(storage)
    except Exception as err:
        raise ConfigError(f"{key}={storage}: not a database URL ({err})") from None
    shown = url.render_as_string(hide_password=True)
    named = (f"{key}={shown}: cannot open it" if value is None
             else f"{key}={value}: cannot open its study storage {shown}")
    sqlite_file = url.database if url.get_backend_name() == "sqlite" and url.database else None
    if sqlite_file:
        Path(sqlite_file).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        open_storage(storage, heartbeat_interval, grace_period).engine.dispose()  # only a check: nothing stays open
    except ImportError:  # Optuna's wording hides which driver
        raise ConfigError(
            f"{named}: no driver for {url.drivername} is installed "
            "(for PostgreSQL install cvsweep's 'postgres' extra and write postgresql+psycopg://...)") from None
    except Exception as err:
        reason = (str(err).splitlines()[0] if str(err) else type(err).__name__).replace(storage, shown)
        corrupt = sqlite_file and _not_a_database(err)
        fix = f"move {sqlite_file} aside (it is not an SQLite database)" if corrupt else "check that it is reachable"
        raise ConfigError(f"{named}: {reason}; {fix}, or {elsewhere}") from None


def _not_a_database(err: BaseException) -> bool:
    """SQLite's answer for a file that is not a database (sqlite3.DatabaseError, not its
    OperationalError subclass, which says locked, unreadable or full)."""
    import sqlite3

    cause = getattr(err, "orig", None) or err.__cause__
    return isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError)
