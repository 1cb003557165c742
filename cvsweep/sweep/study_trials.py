"""The study's side of a sweep: ask a trial (re-seeding the sampler per trial number), give
it its parameters as a job's overrides, tell it the job's outcome, and write Hydra's
optimization_results.yaml. The loop (cvsweep/sweep/loop.py) decides when; this decides how."""

from __future__ import annotations

import logging
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from cvsweep import compat, layout
from cvsweep.study import constraints, cost, ranking
from cvsweep.study import storage as studies
from cvsweep.study.full_disk import full_disk_of

log = logging.getLogger("hydra_plugins.cvsweep_sweeper.cvsweep_sweeper")


@dataclass
class Told:
    """What a trial was told: completed, pruned, infeasible or failed, a failure's error, and
    its cost record (cvsweep/study/cost.py: empty for a trial that ran here)."""

    state: str
    error: Optional[BaseException] = None
    cost: dict = field(default_factory=dict)


class StudyTrials:
    """Asks and tells the trials of one study.

    Args:
        study: The Optuna study.
        sweep_dir: The sweep's folder (a job's folder is its number inside it).
        directions: The study's directions.
        distributions: The swept parameters' Optuna distributions.
        fixed_params: The command line's plain values, carried by every job.
        reseed: Makes the sampler for a trial number (a seeded sweep); None keeps the study's.
        extend: Upstream's custom search space extender, called with each trial.
        artifacts_root: Where a completed trial's model is registered (None: not registered).
        storage_shown: The study's storage as messages name it (password hidden).
    """

    def __init__(self, study: optuna.Study, sweep_dir: Path, directions: list[str], distributions: dict,
                 fixed_params: Optional[dict] = None, reseed: Optional[Callable[[int], Any]] = None,
                 extend: Optional[Callable[[Any], None]] = None, artifacts_root: Optional[str] = None,
                 storage_shown: str = "memory") -> None:
        self.study, self.sweep_dir, self.directions = study, Path(sweep_dir), directions
        self.distributions, self.fixed_params = distributions, dict(fixed_params or {})
        self.reseed, self.extend, self.artifacts_root = reseed, extend, artifacts_root
        self.storage_shown = storage_shown

    def n_to_ask(self, n_trials: int) -> int:
        """How many more trials this process should start (cvsweep/study/storage.py).

        Args:
            n_trials: The finished trials the sweep asks for.

        Returns:
            The number of trials to ask.
        """
        return studies.n_to_ask(self.study, n_trials)

    def n_finished(self) -> int:
        """How many trials the study holds finished (those n_trials counts).

        Returns:
            The number of completed, pruned and infeasible trials.
        """
        return studies.n_counted(self.study.get_trials(deepcopy=False))

    def spend(self) -> cost.Spend:
        """What the study's trials cost, over every run and process sharing it.

        Returns:
            The spend (cvsweep/study/cost.py).
        """
        return cost.study_spend(self.study.get_trials(deepcopy=False))

    def ask(self) -> optuna.Trial:
        """Ask the study for a new trial, claimed by this process.

        Returns:
            The trial; with a seeded sweep, the sampler that suggests its parameters is seeded
            for its number.
        """
        with warnings.catch_warnings():  # Optuna expects heartbeats inside optimize() only
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        if self.reseed is not None:  # the parameters are suggested after ask(), by this sampler
            self.study.sampler = self.reseed(trial.number)
        try:
            studies.claim(trial)
        except Exception as err:  # unclaimed, a re-run would take it for running for grace_period
            if full_disk_of(err) is not None:
                self.release(trial, None, "no space left on the device")
            raise
        return trial

    def configure(self, trials: list) -> list[tuple]:
        """Suggest each trial's parameters and turn them into a job's overrides.

        As upstream, except that the fixed parameters (the command line's plain values) go into
        one trial attribute: one database write per trial instead of one per parameter.

        Args:
            trials: The trials asked.

        Returns:
            One tuple of ``name=value`` overrides per trial, in order.
        """
        overrides = []
        for trial in trials:
            for name, distribution in self.distributions.items():
                compat.suggest(trial, name, distribution)
            if self.extend is not None:
                self.extend(trial)
            if self.fixed_params:
                trial.set_user_attr(studies.FIXED_ATTR, dict(self.fixed_params))
            overrides.append(tuple(f"{name}={value}" for name, value in {**trial.params, **self.fixed_params}.items()))
        return overrides

    def tell(self, trial: optuna.Trial, job: int, ret: Any) -> Told:
        """Record the trial's outcome and where its result.json lies. A configuration that was
        infeasible is an answer, recorded as studies.INFEASIBLE; a pruned trial is told
        PRUNED, and Optuna gives it the last value it reported.

        Args:
            trial: The study trial.
            job: Its job number.
            ret: The job's JobReturn.

        Returns:
            The outcome's name, and the error of a failed trial.
        """
        result = self.result_path(job)
        spent = cost.read_cost(result)  # every outcome: a failed remote job was billed too
        record = {"host": socket.gethostname(), "path": str(result.resolve()), **spent}
        outcome = compat.job_outcome(ret)
        constraints.give_to_optuna(trial, result)  # when the sweep sets constraints
        if isinstance(outcome, optuna.TrialPruned):  # not through return_value: it logs an error
            trial.set_user_attr(studies.RESULT_ATTR, {**record, "reason": str(outcome), "pruned": True})
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("Pruned: %s", outcome)
            return Told("pruned", cost=spent)
        try:
            values = _values(ret.return_value, len(self.directions))
        except Exception as err:  # the trial failed, or returned something unusable
            infeasible = bool(getattr(err, "infeasible", False))
            trial.set_user_attr(studies.RESULT_ATTR, {**record, "reason": str(err), "infeasible": infeasible})
            self.study.tell(trial, state=studies.INFEASIBLE if infeasible else TrialState.FAIL)
            log.warning("%s: %s", "Infeasible configuration" if infeasible else "Failed experiment", err)
            return Told("infeasible", cost=spent) if infeasible else Told("failed", err, spent)
        # Before tell: a finished trial takes no more attributes.
        if self.artifacts_root is not None:
            from cvsweep.study.artifacts import register_model

            artifact_id = register_model(trial, result, self.artifacts_root)
            if artifact_id is not None:
                record["artifact_id"] = artifact_id  # its model.keras in <output_root>/artifacts
        trial.set_user_attr(studies.RESULT_ATTR, record)
        self.study.tell(trial, values=values)
        return Told("completed", cost=spent)

    def fail_interrupted(self, trial: optuna.Trial, job: int, reason: str) -> None:
        """Tell a trial the interrupt stopped FAIL, so the next run asks its parameters again.

        Args:
            trial: The study trial.
            job: Its job number.
            reason: Why it failed, recorded with it.
        """
        result = self.result_path(job)
        record = {"host": socket.gethostname(), "path": str(result.resolve()), "reason": reason,
                  **cost.read_cost(result)}  # a cancelled remote job was billed until it stopped
        studies.fail_interrupted(self.study, trial, record)

    def release(self, trial: optuna.Trial, job: Optional[int], reason: str) -> bool:
        """Mark a trial a full disk abandoned failed now, its parameters asked again, as an
        interrupted one's.

        Args:
            trial: The study trial.
            job: Its job number (None: it had none yet).
            reason: Why it failed, recorded with it.

        Returns:
            False when the study's database could not be written either (its disk is full).

        Raises:
            Exception: Any other error of the storage.
        """
        record = {"host": socket.gethostname(), "reason": reason}
        if job is not None:
            record["path"] = str(self.result_path(job).resolve())
            record.update(cost.read_cost(self.result_path(job)))
        try:
            studies.fail_interrupted(self.study, trial, record)
        except Exception as err:
            if full_disk_of(err) is None:
                raise
            return False
        return True

    def result_path(self, job: int) -> Path:
        """Where a job writes its result.json.

        Args:
            job: The job number.

        Returns:
            The path, inside the sweep's folder.
        """
        return self.sweep_dir / str(job) / layout.RESULT

    def save_results(self) -> None:
        """Hydra's optimization_results.yaml, when the study has a best trial (the one rule of
        cvsweep/study/ranking.py, as the summary names it)."""
        best = ranking.study_best(self.study)
        if not best:
            log.error("No trial of this study completed, so there is no best trial")
            return
        if len(self.directions) < 2:
            results = {"name": "optuna", "best_params": best[0].params, "best_value": best[0].value}
            log.info("Best parameters: %s, value %s", best[0].params, best[0].value)
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in best]}
        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # no trial ran in a finished study
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / layout.OPTIMIZATION_RESULTS)


def _values(returned: Any, n_objectives: int) -> list[float]:
    values = [float(returned)] if n_objectives == 1 else [float(v) for v in returned]
    if len(values) != n_objectives:
        raise ValueError(f"{len(values)} objective values returned, {n_objectives} expected")
    return values
