"""The Optuna sweeper of hydra-optuna-sweeper, with a sweep loop that survives crashes and
shares its study with other sweep processes.

Registered as ``hydra/sweeper: cvsweep``; it takes exactly the Optuna sweeper's settings and
reuses its parsing of the search space and its configuring of trials. What differs from
upstream's loop (cvsweep/study.py has the semantics):
- ``n_trials`` is the number of trials the *study* should hold, not how many to add: a re-run
  after a crash finishes the sweep, a re-run of a finished sweep runs nothing.
- Trials whose process died are marked failed and their parameters asked again.
- A seeded sampler gets a seed per trial number, so re-runs and parallel processes never
  repeat earlier suggestions.
- Each trial records its process and, once finished, where its result.json lies.
- Jobs that differ in values only get their config without Hydra recomposing it
  (cvsweep/sweep_configs.py).
- A sweep in which no trial completed ends normally, so its summary still gets written
  (upstream asks the study for its best trial and crashes when there is none).
"""

import functools
import logging
import socket
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import _convert_old_distribution_to_new_distribution
from optuna.trial import TrialState

# No "from __future__ import annotations" here: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
log = logging.getLogger(__name__)


class CvsweepSweeper(OptunaSweeper):
    def __init__(self, heartbeat_interval: int, grace_period: int, **settings: Any) -> None:
        # upstream's __init__ builds upstream's loop
        self.sweeper = CvsweepSweeperImpl(**settings)
        self.sweeper.heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}


class CvsweepSweeperImpl(OptunaSweeperImpl):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from cvsweep.sweep_configs import SweepConfigCache

        # Jobs that differ in values only get their config without Hydra recomposing it.
        cached = HydraContext(config_loader=SweepConfigCache(hydra_context.config_loader),
                              callbacks=hydra_context.callbacks)
        super().setup(hydra_context=cached, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        from cvsweep import study as studies

        self._process_searchspace_config()
        distributions, fixed_params = create_params_from_overrides(self._parse_sweeper_params_config() + list(arguments))
        distributions = {**(self.search_space_distributions or {}), **distributions}
        for name in fixed_params:
            distributions.pop(name, None)
        # Upstream builds Optuna 2's distribution classes; Optuna's retry of an interrupted
        # trial (and every Optuna 3+ API) compares them with the current ones and refuses a mix.
        distributions = {name: _convert_old_distribution_to_new_distribution(d) for name, d in distributions.items()}
        self._grid(distributions)
        directions = self._get_directions()

        storage = studies.open_storage(self.storage, **self.heartbeat) if self.storage else None
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                    directions=directions, load_if_exists=True)
        log.info("Study %s in %s: %d trials so far", study.study_name, _shown(self.storage), len(study.trials))
        if storage is not None:
            studies.recover_interrupted(study)
        self._run_trials(study, storage, distributions, fixed_params, directions)
        self._save_results(study, directions)

    def _run_trials(self, study, storage, distributions, fixed_params, directions) -> None:
        """Keep up to n_jobs trials running until the study holds n_trials: with a launcher
        that can submit one job (cvsweep's), a trial starts as soon as any one ends; with
        any other launcher, trials run in batches of n_jobs."""
        from cvsweep import study as studies
        from cvsweep.progress import SweepProgress

        running: dict = {}  # future -> (trial, job number, overrides)
        told, failures = 0, []
        already = studies.n_counted(study.get_trials(deepcopy=False))
        with studies.Heartbeat(storage, self.heartbeat["heartbeat_interval"]) as heartbeat, \
                SweepProgress.for_sweep(self.config, self.n_trials, already) as progress:
            while True:
                n_ask = min(self.n_jobs - len(running), studies.n_to_ask(study, self.n_trials))
                trials = [self._ask(study) for _ in range(max(0, n_ask))]
                for trial in trials:
                    heartbeat.add(trial)
                overrides = self._configure_trials(trials, distributions, fixed_params)
                for job_idx, trial in enumerate(trials, self.job_idx):  # before: a local launcher blocks
                    progress.started(trial.number, job_idx, Path(self.config.hydra.sweep.dir) / str(job_idx))
                for offset, (trial, future) in enumerate(zip(trials, self._start(overrides))):
                    running[future] = (trial, self.job_idx + offset, overrides[offset])
                self.job_idx += len(trials)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f][1]):
                    trial, job_idx, job_overrides = running.pop(future)
                    heartbeat.remove(trial)
                    ret = _job_return(future, job_overrides)
                    told += 1
                    error = self._tell(study, trial, job_idx, ret, directions)
                    progress.finished(trial.number, "failed" if error else "completed", ret._return_value, error)
                    if error is not None:
                        failures.append(ret)
                if failures and len(failures) / told > self.max_failure_rate:
                    log.error("Failed %d times out of %d with max_failure_rate=%s.", len(failures), told,
                              self.max_failure_rate)
                    failures[0].return_value  # re-raises the first failure with its traceback

    def _start(self, overrides: List[tuple]) -> List[Future]:
        if not overrides:
            return []
        if hasattr(self.launcher, "submit"):
            return [self.launcher.submit(o, self.job_idx + i) for i, o in enumerate(overrides)]
        finished = []  # a launcher without submit runs the whole batch now
        for ret in self.launcher.launch(overrides, initial_job_idx=self.job_idx):
            finished.append(Future())
            finished[-1].set_result(ret)
        return finished

    def _configure_trials(self, trials, distributions, fixed_params) -> List[tuple]:
        """As upstream, except that the fixed parameters (the command line's plain values) go
        into one trial attribute: one database write per trial instead of one per parameter."""
        from cvsweep.study import FIXED_ATTR

        overrides = []
        for trial in trials:
            for name, distribution in distributions.items():
                trial._suggest(name, distribution)
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
        from cvsweep import study as studies

        with warnings.catch_warnings():  # Optuna expects heartbeats inside optimize() only
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        seed = OmegaConf.select(self.config, "hydra.sweeper.sampler.seed")
        if seed is not None:  # the parameters are suggested after ask(), by this sampler
            study.sampler = instantiate(self.config.hydra.sweeper.sampler, seed=studies.trial_seed(seed, trial.number))
        studies.claim(trial)
        return trial

    def _tell(self, study, trial, job_idx: int, ret, directions) -> Optional[Exception]:
        """Record the trial's outcome and where its result.json lies; returns its error."""
        from cvsweep.study import RESULT_ATTR

        result = Path(self.config.hydra.sweep.dir) / str(job_idx) / "result.json"
        record = {"host": socket.gethostname(), "path": str(result.resolve())}
        try:
            values = _values(ret.return_value, len(directions))
        except Exception as err:  # the trial failed, or returned something unusable
            trial.set_user_attr(RESULT_ATTR, {**record, "reason": str(err)})
            study.tell(trial, state=TrialState.FAIL)
            log.warning("Failed experiment: %s", err)
            return err
        trial.set_user_attr(RESULT_ATTR, record)
        study.tell(trial, values=values)
        return None

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
        return JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                         _return_value=RuntimeError(f"the trial's worker process failed: {type(err).__name__}: {err}"))


def _values(returned: Any, n_objectives: int) -> List[float]:
    values = [float(returned)] if n_objectives == 1 else [float(v) for v in returned]
    if len(values) != n_objectives:
        raise ValueError(f"{len(values)} objective values returned, {n_objectives} expected")
    return values


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
    # Seconds between a running trial's heartbeats, and how old its last one may get before
    # another process takes the trial's process for dead (see cvsweep/study.py).
    heartbeat_interval: int = 10
    grace_period: int = 60


ConfigStore.instance().store(group="hydra/sweeper", name="cvsweep", node=CvsweepSweeperConf, provider="cvsweep")
