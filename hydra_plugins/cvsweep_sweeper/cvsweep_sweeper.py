"""The Optuna sweeper of hydra-optuna-sweeper, with a sweep loop that survives crashes and
shares its study with other sweep processes.

Registered as ``hydra/sweeper: cvsweep``; it takes the Optuna sweeper's settings (plus
heartbeats and ``max_consecutive_failures``) and reuses its parsing of the search space and
its configuring of trials. The study's name and direction arrive settled by the checks before
the sweep (cvsweep/study/identity.py: one study per experiment). What differs from upstream's
loop (cvsweep/study/storage.py has the semantics):
- ``n_trials`` is the number of *finished* trials the study should hold, not how many to add:
  a re-run after a crash finishes the sweep, a re-run of a finished sweep runs nothing, and
  failed trials use up nothing; ``max_consecutive_failures`` failures in a row stop the run.
- Trials whose process died are marked failed and their parameters asked again.
- SIGINT / SIGTERM stop the trials in flight (remote jobs cancelled) and end the run with its
  summary (cvsweep/execution/interrupts.py).
- A seeded sampler gets a seed per trial number, so re-runs and parallel processes never
  repeat earlier suggestions.
- Each trial records its process and, once finished, where its result.json lies.
- Jobs that differ in values only get their config without Hydra recomposing it
  (cvsweep/sweep/job_configs.py).
- A sweep in which no trial completed ends normally, so its summary still gets written
  (upstream asks the study for its best trial and crashes when there is none).
- Trials can be pruned: ``hydra/sweeper/pruner`` picks one of Optuna's pruners, and each
  trial reports its objective after every epoch to its study trial (cvsweep/study/pruning.py);
  upstream's loop has no trial a job could report to. A pruned trial is told PRUNED, counts
  as finished, and the next one starts at once.
"""

import functools
import inspect
import logging
import socket
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, List, Optional

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import MISSING, DictConfig, OmegaConf
from optuna.trial import TrialState

from cvsweep import compat
from cvsweep.study import pruning

# No "from __future__ import annotations" here: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
log = logging.getLogger(__name__)


class CvsweepSweeper(OptunaSweeper):
    def __init__(self, heartbeat_interval: int, grace_period: int, max_consecutive_failures: int,
                 pruner: Optional[optuna.pruners.BasePruner] = None, timeout_s: Optional[float] = None,
                 **settings: Any) -> None:
        # upstream's __init__ builds upstream's loop
        self.sweeper = CvsweepSweeperImpl(**settings)
        self.sweeper.heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
        self.sweeper.max_consecutive_failures = max_consecutive_failures
        self.sweeper.timeout_s = timeout_s
        self.sweeper.pruner = pruner if pruning.prunes(pruner) else None


class CvsweepSweeperImpl(compat.optuna_sweeper_base()):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from cvsweep.sweep.job_configs import SweepConfigCache

        # Jobs that differ in values only get their config without Hydra recomposing it.
        cached = HydraContext(config_loader=SweepConfigCache(hydra_context.config_loader),
                              callbacks=hydra_context.callbacks)
        super().setup(hydra_context=cached, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        from cvsweep.study import storage as studies
        from cvsweep.study.search_space import sweep_parameters

        # The study name and direction were settled by the checks before the sweep
        # (cvsweep/sweep/preflight.py): derived from the experiment, or checked against it.
        self._process_searchspace_config()
        distributions, fixed_params = sweep_parameters(self.config)
        distributions = {**(self.search_space_distributions or {}), **distributions}
        self._grid(distributions)
        directions = self._get_directions()

        storage = studies.open_storage(self.storage, **self.heartbeat) if self.storage else None
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                    pruner=self.pruner, directions=directions, load_if_exists=True)
        log.info("Study %s in %s: %d trials so far", study.study_name, _shown(self.storage), len(study.trials))
        if storage is not None:
            studies.recover_interrupted(study, self.heartbeat["grace_period"])
        self._run_trials(study, storage, distributions, fixed_params, directions)
        self._save_results(study, directions)

    def _run_trials(self, study, storage, distributions, fixed_params, directions) -> None:
        """Keep up to n_jobs trials running until the study holds n_trials finished ones: with
        a launcher that can submit one job (cvsweep's), a trial starts as soon as any one
        ends; with any other launcher, trials run in batches of n_jobs. Stops early after
        max_consecutive_failures failures in a row, on SIGINT / SIGTERM (see
        cvsweep/execution/interrupts.py), or when timeout_s has passed: no new trial starts,
        the running ones finish (with a pruner, they stop at their next epoch's end);
        cvsweep/sweep/early_end.py carries the exit status to the hook."""
        from cvsweep.execution.interrupts import SweepInterrupted, SweepInterrupts
        from cvsweep.reporting.progress import SweepProgress
        from cvsweep.study import storage as studies
        from cvsweep.sweep import early_end

        running: dict = {}  # future -> (trial, job number, overrides)
        told, failures, streak = 0, [], []
        changed, cancelling = True, False  # the study asked only when a trial ended
        already = studies.n_counted(study.get_trials(deepcopy=False))
        deadline = time.time() + self.timeout_s if self.timeout_s is not None else None
        pruning.set_deadline(deadline)
        out_of_time = False
        with studies.Heartbeat(storage, self.heartbeat["heartbeat_interval"]) as heartbeat, \
                SweepInterrupts() as interrupts, \
                SweepProgress.for_sweep(self.config, self.n_trials, already) as progress:
            while True:
                if deadline is not None and not out_of_time and time.time() >= deadline:
                    out_of_time = True
                    log.info("The sweep's time limit (hydra.sweeper.timeout_s=%s) ran out: no new trial starts; "
                             "%d running finish%s", self.timeout_s, len(running),
                             " (stopped at their next epoch's end)" if self.pruner is not None else "")
                stopping = interrupts.signum is not None or len(streak) >= self.max_consecutive_failures or out_of_time
                free = self.n_jobs - len(running)
                n_ask = min(free, studies.n_to_ask(study, self.n_trials)) if changed and free > 0 and not stopping else 0
                trials = [self._ask(study) for _ in range(max(0, n_ask))]
                for trial in trials:
                    heartbeat.add(trial)
                overrides = self._configure_trials(trials, distributions, fixed_params)
                for job_idx, trial in enumerate(trials, self.job_idx):  # before: a local launcher blocks
                    progress.started(trial.number, job_idx, Path(self.config.hydra.sweep.dir) / str(job_idx))
                    if self.pruner is not None:
                        pruning.attach(job_idx, trial)  # its job reports each epoch to it
                try:
                    futures = self._start(overrides, interrupts)
                except SweepInterrupted:  # a local trial, training in this process, was stopped
                    for offset, trial in enumerate(trials):
                        heartbeat.remove(trial)
                        pruning.detach(self.job_idx + offset)
                        self._tell_interrupted(study, trial, self.job_idx + offset, interrupts, progress)
                    self.job_idx += len(trials)
                    changed = True
                    continue
                for offset, (trial, future) in enumerate(zip(trials, futures)):
                    running[future] = (trial, self.job_idx + offset, overrides[offset])
                self.job_idx += len(trials)
                if not running:
                    break
                if interrupts.signum is not None and not cancelling and hasattr(self.launcher, "interrupt"):
                    self.launcher.interrupt()  # its workers cancel their remote jobs and return
                    cancelling = True
                # A timeout, so that a signal is acted on while every trial still runs.
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                changed = bool(done)
                for future in sorted(done, key=lambda f: running[f][1]):
                    trial, job_idx, job_overrides = running.pop(future)
                    heartbeat.remove(trial)
                    pruning.detach(job_idx)
                    if interrupts.signum is not None:
                        self._tell_interrupted(study, trial, job_idx, interrupts, progress,
                                               _job_return(future, job_overrides))
                        continue
                    ret = _job_return(future, job_overrides)
                    told += 1
                    state, error = self._tell(study, trial, job_idx, ret, directions)
                    completed = state == "completed"
                    outcome = compat.job_outcome(ret)
                    progress.finished(trial.number, state, outcome if completed else None,
                                      None if completed else error or outcome)  # the reason
                    if error is None:
                        streak = []
                        continue
                    failures.append(ret)
                    streak.append(error)
                if failures and len(failures) / told > self.max_failure_rate:
                    log.error("Failed %d times out of %d with max_failure_rate=%s.", len(failures), told,
                              self.max_failure_rate)
                    failures[0].return_value  # re-raises the first failure with its traceback
        if interrupts.signum is not None:
            early_end.end_early(interrupts.exit_code, f"the sweep was interrupted ({_signal_name(interrupts.signum)}): "
                                "the trials in flight were stopped and marked failed; run the same command to go on")
        elif len(streak) >= self.max_consecutive_failures:
            early_end.end_early(1, f"{len(streak)} trials failed in a row "
                                   f"(hydra.sweeper.max_consecutive_failures={self.max_consecutive_failures}), "
                                   f"so the sweep stopped; the first of them: {streak[0]}")
        elif out_of_time:
            finished = studies.n_counted(study.get_trials(deepcopy=False))
            early_end.end_early(0, f"the sweep's time limit (hydra.sweeper.timeout_s={self.timeout_s:g}) ended it: "
                                   f"{finished} of n_trials={self.n_trials} finished; run the same command to go on")
        pruning.set_deadline(None)

    def _tell_interrupted(self, study, trial, job_idx: int, interrupts, progress,
                          ret: Optional[JobReturn] = None) -> None:
        """A trial the interrupt stopped: FAIL (reason "interrupted ..."), its parameters asked
        again by the next run. One that completed, or was pruned, before the stop reached it
        keeps its result."""
        from cvsweep.study import storage as studies

        if ret is not None and (ret.status == JobStatus.COMPLETED
                                or isinstance(compat.job_outcome(ret), optuna.TrialPruned)):
            state, _ = self._tell(study, trial, job_idx, ret, self._get_directions())
            progress.finished(trial.number, state, compat.job_outcome(ret) if state == "completed" else None,
                              None if state == "completed" else compat.job_outcome(ret))
            return
        result = Path(self.config.hydra.sweep.dir) / str(job_idx) / "result.json"
        reason = f"interrupted by {_signal_name(interrupts.signum)}"
        studies.fail_interrupted(study, trial, {"host": socket.gethostname(), "path": str(result.resolve()),
                                                "reason": reason})
        progress.finished(trial.number, "interrupted", None, reason)

    def _start(self, overrides: List[tuple], interrupts) -> List[Future]:
        if not overrides:
            return []
        if hasattr(self.launcher, "submit"):
            return [self.launcher.submit(o, self.job_idx + i) for i, o in enumerate(overrides)]
        finished = []  # a launcher without submit runs the whole batch now, in this process
        interrupts.raise_now = True  # so Ctrl-C stops the training, not only the sweep
        try:
            rets = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        finally:
            interrupts.raise_now = False
        for ret in rets:
            finished.append(Future())
            finished[-1].set_result(ret)
        return finished

    def _configure_trials(self, trials, distributions, fixed_params) -> List[tuple]:
        """As upstream, except that the fixed parameters (the command line's plain values) go
        into one trial attribute: one database write per trial instead of one per parameter."""
        from cvsweep.study.storage import FIXED_ATTR

        overrides = []
        for trial in trials:
            for name, distribution in distributions.items():
                compat.suggest(trial, name, distribution)
            if self.custom_search_space_extender:
                self.custom_search_space_extender(self.config, trial)
            if fixed_params:
                trial.set_user_attr(FIXED_ATTR, dict(fixed_params))
            overrides.append(tuple(f"{name}={value}" for name, value in {**trial.params, **fixed_params}.items()))
        return overrides

    def _grid(self, distributions: dict) -> None:
        """As upstream: a grid sampler gets the grid, and never more trials than it holds."""
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, _product(len(v) for v in grid.values()))

    def _ask(self, study: optuna.Study) -> optuna.Trial:
        from cvsweep.study import storage as studies

        with warnings.catch_warnings():  # Optuna expects heartbeats inside optimize() only
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        seed = OmegaConf.select(self.config, "hydra.sweeper.sampler.seed")
        if seed is not None:  # the parameters are suggested after ask(), by this sampler
            study.sampler = instantiate(self.config.hydra.sweeper.sampler, seed=studies.trial_seed(seed, trial.number))
        studies.claim(trial)
        return trial

    def _tell(self, study, trial, job_idx: int, ret, directions) -> tuple:
        """Record the trial's outcome and where its result.json lies; returns the outcome's name
        (completed, pruned, infeasible, failed) and the error of a failed one. A configuration
        that was infeasible is an answer, recorded as studies.INFEASIBLE; a pruned trial is told
        PRUNED, and Optuna gives it the last value it reported."""
        from cvsweep.study import storage as studies

        result = Path(self.config.hydra.sweep.dir) / str(job_idx) / "result.json"
        record = {"host": socket.gethostname(), "path": str(result.resolve())}
        outcome = compat.job_outcome(ret)
        if isinstance(outcome, optuna.TrialPruned):  # not through return_value: it logs an error
            trial.set_user_attr(studies.RESULT_ATTR, {**record, "reason": str(outcome), "pruned": True})
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Pruned: %s", outcome)
            return "pruned", None
        try:
            values = _values(ret.return_value, len(directions))
        except Exception as err:  # the trial failed, or returned something unusable
            infeasible = bool(getattr(err, "infeasible", False))
            trial.set_user_attr(studies.RESULT_ATTR, {**record, "reason": str(err), "infeasible": infeasible})
            study.tell(trial, state=studies.INFEASIBLE if infeasible else TrialState.FAIL)
            log.warning("%s: %s", "Infeasible configuration" if infeasible else "Failed experiment", err)
            return ("infeasible", None) if infeasible else ("failed", err)
        # Before tell: a finished trial takes no more attributes. Not for an in-memory study
        # (storage null): it is gone after the run, and its artifact copies would stay behind.
        if self.config.artifacts.name != "none" and self.storage:
            from cvsweep.study.artifacts import register_model

            artifact_id = register_model(trial, result, self.config.output_root)
            if artifact_id is not None:
                record["artifact_id"] = artifact_id  # its model.keras in <output_root>/artifacts
        trial.set_user_attr(studies.RESULT_ATTR, record)
        study.tell(trial, values=values)
        return "completed", None

    def _save_results(self, study: optuna.Study, directions: List[str]) -> None:
        """Hydra's optimization_results.yaml, when the study has a best trial."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.error("No trial of this study completed, so there is no best trial")
            return
        if len(directions) < 2:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best parameters: %s, value %s", best.params, best.value)
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
        Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)  # no trial ran in a finished study
        OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")


def _job_return(future: Future, overrides: tuple) -> JobReturn:
    """The job's JobReturn; a job whose worker process died becomes a failed one."""
    try:
        return future.result()
    except Exception as err:  # BrokenProcessPool: killed by a signal or out of memory
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = RuntimeError(f"the trial's worker process failed: {type(err).__name__}: {err}")
        return ret


def _values(returned: Any, n_objectives: int) -> List[float]:
    values = [float(returned)] if n_objectives == 1 else [float(v) for v in returned]
    if len(values) != n_objectives:
        raise ValueError(f"{len(values)} objective values returned, {n_objectives} expected")
    return values


def _signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _product(numbers) -> int:
    result = 1
    for n in numbers:
        result *= n
    return result


def _shown(storage: Optional[str]) -> str:
    if not storage:
        return "memory"
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


@dataclass
class CvsweepSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.cvsweep_sweeper.cvsweep_sweeper.CvsweepSweeper"
    # The sampler as upstream; the pruner, which stops trials that fall behind after an epoch
    # (hydra/sweeper/pruner=none|median|percentile|successive_halving|hyperband).
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    pruner: Any = MISSING  # from the defaults above, as the sampler
    # Seconds between a running trial's heartbeats, and how old its last one may get before
    # another process takes the trial's process for dead (see cvsweep/study/storage.py).
    heartbeat_interval: int = 10
    grace_period: int = 60
    # A run stops (exit 1, with the first one's reason) after this many failed trials in a
    # row: a broken setup (offline, wrong endpoint or key) never loops. Failed trials do not
    # count towards n_trials, which counts finished ones.
    max_consecutive_failures: int = 3
    # The whole sweep's wall clock, in seconds (null: none). When it runs out no new trial
    # starts; running trials finish, or with a pruner stop at their next epoch's end.
    timeout_s: Optional[float] = None


ConfigStore.instance().store(group="hydra/sweeper", name="cvsweep", node=CvsweepSweeperConf, provider="cvsweep")

# Percentile has no default of its own in Optuna; the rest take Optuna's.
PRUNER_SETTINGS = {"percentile": {"percentile": 25.0}}


def _pruner_conf(option: str, target: str) -> type:
    """hydra/sweeper/pruner=<option>: the Optuna pruner's settings, read from its signature
    with Optuna's defaults, so every setting is there and none is listed twice."""
    from hydra.utils import get_class

    fields = [("_target_", str, target)]
    for param in inspect.signature(get_class(target)).parameters.values():
        default = PRUNER_SETTINGS.get(option, {}).get(param.name, param.default)
        kind = type(default) if isinstance(default, (int, float)) and default is not inspect.Parameter.empty else Any
        fields.append((param.name, kind, default if default is not inspect.Parameter.empty else None))
    return make_dataclass(f"{option.title().replace('_', '')}PrunerConf", fields)


for _option, _target in pruning.PRUNER_TARGETS.items():
    ConfigStore.instance().store(group="hydra/sweeper/pruner", name=_option, node=_pruner_conf(_option, _target),
                                 provider="cvsweep")
