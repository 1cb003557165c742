"""Optuna pruning across the Hydra boundary: each trial reports its objective after every epoch
to its study trial, and stops when the study's pruner says so.

Hydra's Optuna sweeper never could prune: a trial is a Hydra job, which has no Optuna trial to
report to. cvsweep's sweep loop (cvsweep/sweep/loop.py) hands each job its trial through the
sweep's ``TrialHandles`` (held by its context, cvsweep/sweep/context.py):
- a job that runs in the sweep process (Hydra's basic launcher, local sweeps) finds the live
  ``optuna.Trial`` the sweeper asked, any storage, in-memory included (``attach``);
- a job in a forked launcher worker (cvsweep's launcher, remote sweeps) gets a ``TrialRef``
  (storage URL, study, trial id, pruner) and reaches the same trial through the storage
  (``portable`` and ``adopt``); an in-memory study cannot be reached from there, which the
  checks before the sweep refuse (``check_pruning``).
The job's ``EpochReporter`` is the executor's ``prune`` hook: a local run asks it at each
epoch's end and waits for the answer (cvsweep/training/process.py); a remote trial asks it
for each epoch the worker reports and cancels the job (cvsweep/execution/runpod.py). The
sweeper then tells the trial PRUNED, which Optuna records with its last reported value.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import optuna

from cvsweep import compat
from cvsweep.config.objectives import epoch_value, objectives_of
from cvsweep.config.schema import OBJECTIVES, ConfigError
from cvsweep.errors import CvsweepError

log = logging.getLogger("cvsweep.pruning")

NO_PRUNER = "optuna.pruners.NopPruner"
PRUNER_GROUP = "hydra/sweeper/pruner"
# The default option (conf/hydra/sweeper/pruner/auto.yaml): settled before the sweep by
# check_pruning into the median pruner or none (auto_pruner); its target is never made.
AUTO = "auto"
AUTO_TARGET = "cvsweep.study.pruning.unsettled_auto"
# The launchers whose jobs can reach their trial: in the sweep process, or forked from it.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
FORKING_LAUNCHER = "hydra_plugins.cvsweep_launcher.cvsweep_launcher.CvsweepLauncher"

@dataclass(frozen=True)
class TrialRef:
    """What a launcher worker needs to report to a trial of a stored study."""

    storage: str
    study_name: str
    trial_id: int
    pruner: optuna.pruners.BasePruner
    deadline: Optional[float] = None  # the sweep's time limit, as time.time()


def prunes(pruner) -> bool:
    """Whether a pruner can stop a trial.

    Args:
        pruner: An Optuna pruner, or its config with ``_target_``, or None.

    Returns:
        False for None and Optuna's NopPruner, True otherwise.
    """
    if pruner is None:
        return False
    if isinstance(pruner, optuna.pruners.BasePruner):
        return not isinstance(pruner, optuna.pruners.NopPruner)
    return pruner.get("_target_") != NO_PRUNER


class TrialHandles:
    """Which study trial each job of a sweep reports to, in this process, and the sweep's time
    limit (``deadline``, as time.time(); None: no limit), when a trial still training stops at
    its next epoch's end."""

    def __init__(self, deadline: Optional[float] = None) -> None:
        self.deadline = deadline
        self.trials: dict[int, optuna.Trial] = {}  # job -> the live trial (the sweep process)
        self.refs: dict[int, TrialRef] = {}  # job -> how a forked worker reaches it

    # -- the sweep process ---------------------------------------------------------------------
    def attach(self, job: int, trial: optuna.Trial) -> None:
        """Have a job report each epoch to its trial.

        Args:
            job: The job number.
            trial: The live study trial.
        """
        self.trials[job] = trial

    def detach(self, job: int) -> None:
        """A job has ended: it reports to nothing any more.

        Args:
            job: The job number.
        """
        self.trials.pop(job, None)
        self.refs.pop(job, None)

    def portable(self, job: int, storage: Optional[str]) -> Optional[TrialRef]:
        """How a forked worker reaches job ``job``'s trial.

        Args:
            job: The job number.
            storage: The study's storage URL (None or empty: the study is in memory).

        Returns:
            The ``TrialRef``; None when no trial is attached, or its study lives in this
            process's memory only.
        """
        trial = self.trials.get(job)
        if trial is None or not storage:
            return None
        return TrialRef(_absolute(str(storage)), trial.study.study_name, compat.trial_id(trial), trial.study.pruner,
                        self.deadline)

    # -- the job's process ---------------------------------------------------------------------
    def adopt(self, job: int, ref: Optional[TrialRef]) -> None:
        """In a launcher worker: have a job report to the trial a ``TrialRef`` names.

        Args:
            job: The job number.
            ref: How to reach the trial (opened on use); None: the job reports to nothing.
        """
        if ref is not None:
            self.refs[job] = ref

    def reporter(self, cfg, job: Optional[int]) -> Optional["EpochReporter"]:
        """The ``prune`` hook of job ``job``.

        Args:
            cfg: The job's config (its objective and health_weight).
            job: The job number; None for a single run.

        Returns:
            The ``EpochReporter``; None for a single run, a sweep without a pruner, or a job
            with no trial to report to.
        """
        if job is None:
            return None
        trial, deadline = self.trials.get(job), self.deadline
        if trial is None and job in self.refs:
            trial, deadline = _open(self.refs[job]), self.refs[job].deadline
        if trial is None:
            return None
        return EpochReporter(trial, cfg.objective, cfg.health_weight, deadline)


def _absolute(url: str) -> str:
    """A SQLite URL with its file's absolute path: a worker's job may run in another folder
    (hydra.job.chdir=true)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(Path(parsed.database).expanduser().resolve())).render_as_string(hide_password=False)


def _open(ref: TrialRef) -> Optional[optuna.Trial]:
    try:
        study = optuna.load_study(study_name=ref.study_name, storage=_storage(ref.storage), pruner=ref.pruner)
        return optuna.Trial(study, ref.trial_id)
    except Exception as err:  # the trial trains unpruned rather than not at all
        log.warning("cannot reach this trial in the study storage, so it will not be pruned: %s", err)
        return None


@functools.cache
def _storage(url: str) -> optuna.storages.BaseStorage:
    """One storage per worker process and URL, opened on first use (after the fork)."""
    return optuna.storages.RDBStorage(url)


class EpochReporter:
    """Reports the objective's value after each epoch (``objectives.epoch_value``) to the
    trial, and answers whether the pruner stops the run, or the sweep's time limit
    (``deadline``) has run out. Never after the last planned epoch: the run's work is done, so
    it completes. A fault in the storage never costs the run: it goes on unpruned."""

    def __init__(self, trial: optuna.Trial, objective, health_weight: float, deadline: Optional[float] = None):
        self.trial, self.objective, self.health_weight = trial, objective, health_weight
        self.deadline = deadline
        self.last: Optional[dict] = None  # the last epoch reported and its value
        self.out_of_time = False

    def __call__(self, update: dict) -> bool:
        value = epoch_value(update, self.objective, self.health_weight)
        epoch = update.get("epoch")
        if value is None or not isinstance(epoch, int):
            return False
        try:
            self.trial.report(value, epoch)
            self.last = {"epoch": epoch, "value": value}
            if epoch >= update.get("epochs", math.inf):
                return False
            self.out_of_time = self.deadline is not None and time.time() >= self.deadline
            return self.out_of_time or self.trial.should_prune()
        except Exception as err:
            log.warning("could not report epoch %d to the study, so the run goes on: %s", epoch, err)
            return False

    def record(self) -> dict:
        """What result.json's ``pruned`` records.

        Returns:
            The last epoch and value the pruner saw, the metric and the pruner's class name;
            with ``"by": "timeout_s"`` when the sweep's time limit stopped the run.
        """
        by = {"by": "timeout_s"} if self.out_of_time else {}
        return {**(self.last or {}), "metric": self.objective.name, "pruner": type(self.trial.study.pruner).__name__,
                **by}

    def reason(self) -> str:
        """Why the run stopped, for result.json and the tables.

        Returns:
            One sentence: pruned, or stopped by the sweep's time limit, after which epoch.
        """
        record = self.record()
        seen = f"{record['metric']} {record['value']:.4f} " if "value" in record else ""
        if self.out_of_time:
            return (f"stopped after epoch {record.get('epoch', '?')} ({seen.strip() or 'no value'}): the sweep's "
                    "time limit (hydra.sweeper.timeout_s) ran out")
        return (f"pruned after epoch {record.get('epoch', '?')}: {seen}was behind the other trials "
                f"({record['pruner']})")


# -- before the sweep --------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoChoice:
    """What ``hydra/sweeper/pruner=auto`` settles on: a pruner option, and why."""

    name: str  # "median" or "none"
    why: str


def auto_pruner(objectives: Sequence[str], unreachable: Optional[str] = None) -> AutoChoice:
    """The pruner ``hydra/sweeper/pruner=auto`` (the default) settles on, from the objectives table.

    The median pruner where it can act: one objective, with a value per epoch, in trials that
    can reach their study trial; no pruner otherwise.

    Args:
        objectives: The study's objective names, primary first.
        unreachable: Why the trials cannot reach their study trial (the launcher, an in-memory
            study), or None when they can.

    Returns:
        The option (``median`` or ``none``) and why, in words.
    """
    if len(objectives) > 1:
        return AutoChoice("none", f"{len(objectives)} objectives ({', '.join(objectives)}): Optuna cannot prune a "
                                  "multi-objective study")
    name = objectives[0]
    metric = OBJECTIVES[name].per_epoch
    if metric is None:
        return AutoChoice("none", f"objective={name} has no value per epoch (it is known before training or only "
                                  "after it)")
    if unreachable is not None:
        return AutoChoice("none", unreachable)
    per_epoch = metric if metric == name else f"{name}, judged per epoch on {metric}"
    return AutoChoice("median", f"one objective with a value per epoch ({per_epoch})")


def pruner_record(cfg) -> dict:
    """Which pruner a sweep runs with and why, as summary.json's ``pruner`` records it.

    Args:
        cfg: The sweep's config.

    Returns:
        ``{"name", "chosen_by", "why"}``: ``chosen_by`` is ``auto`` when the default settled it
        (``auto_pruner``), ``hydra/sweeper/pruner`` when the config names it.
    """
    option = cfg.hydra.runtime.choices.get(PRUNER_GROUP)
    if option == AUTO:
        reach = _unreachable(cfg)
        choice = auto_pruner([o.name for o in objectives_of(cfg)], reach and reach[0])
        return {"name": choice.name, "chosen_by": AUTO, "why": choice.why}
    return {"name": option, "chosen_by": PRUNER_GROUP, "why": f"{PRUNER_GROUP}={option}"}


def check_pruning(cfg) -> None:
    """Settle ``hydra/sweeper/pruner=auto`` (``auto_pruner``), and check that a named pruner can
    act on the sweep: one objective, with a value per epoch, and trials that can reach their
    study trial.

    Args:
        cfg: The sweep's config; an ``auto`` pruner is replaced by the one it settles on.

    Raises:
        ConfigError: The pruner is set as a value, its settings are invalid, or it cannot act
            on this sweep; the message names the fix.
    """
    sweeper = cfg.hydra.sweeper
    if isinstance(sweeper.get("pruner"), str):  # hydra.sweeper.pruner=median: a value, not the group
        raise ConfigError(f"hydra.sweeper.pruner={sweeper.pruner}: choose a pruner with "
                          f"hydra/sweeper/pruner=NAME (a config group: {', '.join([AUTO, *PRUNER_TARGETS])}, or an option "
                          "of conf/hydra/sweeper/pruner/), and set its settings as hydra.sweeper.pruner.KEY=VALUE")
    chosen = f"{PRUNER_GROUP}={cfg.hydra.runtime.choices.get(PRUNER_GROUP)}"
    if (sweeper.get("pruner") or {}).get("_target_") == AUTO_TARGET:
        _settle_auto(cfg, chosen)
    if not prunes(sweeper.get("pruner")):
        return
    off = f"{PRUNER_GROUP}=none"
    _check_settings(sweeper.pruner, chosen)
    objectives = objectives_of(cfg)
    if len(objectives) > 1:
        raise ConfigError(f"{chosen}: Optuna cannot prune a multi-objective study (objectives "
                          f"{', '.join(o.name for o in objectives)}); set {off}, or drop secondary_objectives")
    if OBJECTIVES[cfg.objective.value].per_epoch is None:
        per_epoch = ", ".join(name for name, spec in OBJECTIVES.items() if spec.per_epoch)
        raise ConfigError(f"{chosen}: objective={cfg.objective.name} has no value per epoch to prune on (it is "
                          f"known before training or only after it); set {off}, or an objective of {per_epoch}")
    unreachable = _unreachable(cfg)
    if unreachable is not None:
        problem, fix = unreachable
        raise ConfigError(f"{chosen}: {problem}; {fix}, or {off}")


def _settle_auto(cfg, chosen: str) -> None:
    """Replace the auto pruner with the median (its settings) or none, and say which and why."""
    from omegaconf import OmegaConf, read_write

    reach = _unreachable(cfg)
    choice = auto_pruner([o.name for o in objectives_of(cfg)], reach and reach[0])
    settings = {k: v for k, v in OmegaConf.to_container(cfg.hydra.sweeper.pruner).items() if k != "_target_"}
    median = {"_target_": PRUNER_TARGETS["median"], **settings}
    _check_settings(median, chosen)  # settings typed are checked, whichever it settles on
    with read_write(cfg.hydra.sweeper):
        cfg.hydra.sweeper.pruner = median if choice.name == "median" else {"_target_": NO_PRUNER}
    log.info("Pruner: %s (%s: %s)", choice.name, chosen, choice.why)


def _unreachable(cfg) -> Optional[tuple[str, str]]:
    """(why, fix) when the sweep's trials cannot reach their study trial; None when they can."""
    launcher = cfg.hydra.launcher.get("_target_")
    if launcher not in (BASIC_LAUNCHER, FORKING_LAUNCHER):
        return (f"hydra/launcher={cfg.hydra.runtime.choices.get('hydra/launcher')} runs trials where they cannot "
                "reach their study trial", "use the default launcher (or hydra/launcher=cvsweep)")
    if launcher == FORKING_LAUNCHER and not cfg.hydra.sweeper.storage:
        return ("hydra.sweeper.storage=null keeps the study in the sweep process's memory, and these trials run in "
                "launcher worker processes that cannot reach it",
                "set a storage (the default is sqlite:///${output_root}/optuna.db)")
    return None


def unsettled_auto(**settings) -> None:
    """What ``hydra/sweeper/pruner=auto`` makes when nothing settled it: never a pruner.

    Args:
        **settings: The median pruner's settings it carries.

    Raises:
        CvsweepError: Always: the checks before a sweep (``check_pruning``) settle it first.
    """
    raise CvsweepError(f"{PRUNER_GROUP}=auto is settled by the checks before a sweep (check_pruning), "
                       "which did not run")


def _check_settings(pruner, chosen: str) -> None:
    """Optuna checks a pruner's settings when it is made: make it once now."""
    from hydra.utils import instantiate

    try:
        instantiate(pruner)
    except Exception as err:
        reason = str(err.__cause__ or err).splitlines()[0]
        raise ConfigError(f"hydra.sweeper.pruner ({chosen}): {reason}") from None


# The options of hydra/sweeper/pruner (registered with their settings in
# cvsweep/sweep/sweeper_conf.py) and the Optuna class each makes.
PRUNER_TARGETS = {
    "none": NO_PRUNER,
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
}
