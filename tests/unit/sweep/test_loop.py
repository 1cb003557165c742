"""The sweep loop (cvsweep/sweep/loop.py) in-process: an in-memory Optuna study and a fake
launcher that ends one job per wait, oldest first, with a prepared outcome. No Hydra, no
TensorFlow, no subprocess."""

from __future__ import annotations

import signal
import optuna
import pytest
from fake_launcher import FakeLauncher
from optuna.trial import TrialState

from cvsweep.execution.interrupts import SweepInterrupted
from cvsweep.study import storage as studies
from cvsweep.sweep import context
from cvsweep.sweep.context import LoopSettings, SweepContext
from cvsweep.sweep.loop import run_sweep
from cvsweep.sweep.study_trials import StudyTrials
from cvsweep.sweep.trial import TrialFailed, TrialPruned

OK, FAIL, PRUNED, INFEASIBLE = "ok", "fail", "pruned", "infeasible"


def _outcome(kind: str, job: int):
    if kind == OK:
        return 0.5 + job / 100
    if kind == PRUNED:
        return TrialPruned(f"pruned after epoch 1 (job {job})")
    return TrialFailed(f"job {job} {kind}", infeasible=kind == INFEASIBLE)


def fake_launcher(outcomes: list[str], on_wait=None, on_start=None) -> FakeLauncher:
    """A launcher whose job N ends as ``outcomes[N]`` (the last one for the jobs beyond the list),
    then calls ``on_wait(job)``."""
    return FakeLauncher(lambda job: _outcome(outcomes[min(job, len(outcomes) - 1)], job), on_wait, on_start)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sweep(tmp_path, launcher, **settings) -> tuple[SweepContext, optuna.Study]:
    study = optuna.create_study(directions=["minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    trials = StudyTrials(study, tmp_path, ["minimize"], {"x": optuna.distributions.FloatDistribution(0, 1)})
    clock = settings.pop("clock", None)
    ctx = SweepContext(LoopSettings(**{"max_failure_rate": 1.0, **settings}), tmp_path)
    if clock is not None:
        ctx.clock = clock
    run_sweep(ctx, trials, launcher)
    return ctx, study


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_n_trials_counts_finished_trials(tmp_path):
    ctx, study = _sweep(tmp_path, fake_launcher([OK]), n_trials=5, n_jobs=2)
    assert _states(study) == [TrialState.COMPLETE] * 5
    assert ctx.early_end is None and not ctx.running
    assert (tmp_path / "optimization_results.yaml").exists() is False  # the caller saves them


def test_failed_trials_use_up_nothing_of_n_trials(tmp_path):
    launcher = fake_launcher([FAIL, OK, FAIL, OK, OK, OK])
    ctx, study = _sweep(tmp_path, launcher, n_trials=4, n_jobs=1)
    assert _states(study).count(TrialState.COMPLETE) == 4
    assert _states(study).count(TrialState.FAIL) == 2
    assert launcher.started == list(range(6)) and ctx.early_end is None


@pytest.mark.parametrize("n_jobs", [1, 3])
def test_n_jobs_trials_are_in_flight(tmp_path, n_jobs):
    launcher = fake_launcher([OK])
    _sweep(tmp_path, launcher, n_trials=7, n_jobs=n_jobs)
    assert launcher.most_in_flight == n_jobs
    assert len(launcher.started) == 7


def test_a_success_resets_the_failure_streak(tmp_path):
    # Six failures, never three in a row: the sweep runs to its end.
    launcher = fake_launcher([FAIL, FAIL, OK, FAIL, FAIL, OK, FAIL, FAIL, OK])
    ctx, study = _sweep(tmp_path, launcher, n_trials=3, n_jobs=1, max_consecutive_failures=3)
    assert ctx.early_end is None
    assert _states(study).count(TrialState.COMPLETE) == 3 and len(launcher.started) == 9


@pytest.mark.parametrize("success", [PRUNED, INFEASIBLE])
def test_a_pruned_or_infeasible_trial_resets_the_streak_too(tmp_path, success):
    launcher = fake_launcher([FAIL, FAIL, success, FAIL, FAIL, OK])
    ctx, _ = _sweep(tmp_path, launcher, n_trials=2, n_jobs=1, max_consecutive_failures=3)
    assert ctx.early_end is None and len(launcher.started) == 6


def test_consecutive_failures_stop_the_sweep_with_the_first_reason(tmp_path):
    launcher = fake_launcher([OK, FAIL])
    ctx, _ = _sweep(tmp_path, launcher, n_trials=10, n_jobs=1, max_consecutive_failures=3)
    assert launcher.started == [0, 1, 2, 3]
    assert ctx.early_end.exit_code == 1
    assert "3 trials failed in a row" in ctx.early_end.message and "job 1 fail" in ctx.early_end.message


def test_the_failure_rate_raises_the_first_failure(tmp_path):
    with pytest.raises(TrialFailed, match="job 1 fail"):
        _sweep(tmp_path, fake_launcher([OK, FAIL, OK]), n_trials=5, n_jobs=1, max_failure_rate=0.4)


def test_the_deadline_starts_nothing_new_and_ends_the_sweep_early(tmp_path):
    clock = FakeClock()

    def tick(job):
        clock.now += 10

    launcher = fake_launcher([OK], on_wait=tick)
    ctx, _ = _sweep(tmp_path, launcher, n_trials=10, n_jobs=1, timeout_s=25, clock=clock)
    assert launcher.started == [0, 1, 2]  # at 1030 the limit of 1025 had passed
    assert ctx.early_end.exit_code == 0 and "3 of n_trials=10 finished" in ctx.early_end.message
    assert ctx.deadline == 1025 and ctx.handles.deadline is None


def test_an_interrupt_stops_the_asks_and_the_jobs_in_flight(tmp_path):
    holder = {}

    def signal_after_first(job):
        if job == 0:
            holder["ctx"].interrupts.record(signal.SIGINT)

    launcher = fake_launcher([OK], on_wait=signal_after_first)
    study = optuna.create_study(directions=["minimize"])
    trials = StudyTrials(study, tmp_path, ["minimize"], {"x": optuna.distributions.FloatDistribution(0, 1)})
    ctx = holder["ctx"] = SweepContext(LoopSettings(n_trials=10, n_jobs=3, max_failure_rate=1.0), tmp_path)
    run_sweep(ctx, trials, launcher)
    assert launcher.started == [0, 1, 2] and launcher.interrupted
    # Their parameters are asked again by the next run (WAITING copies).
    assert _states(study) == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL] + [TrialState.WAITING] * 2
    reasons = [t.user_attrs[studies.RESULT_ATTR]["reason"] for t in study.trials[1:3]]
    assert reasons == ["interrupted by SIGINT"] * 2
    assert ctx.early_end.exit_code == 130 and "interrupted (SIGINT)" in ctx.early_end.message


def test_a_trial_stopped_while_training_in_this_process_is_told_interrupted(tmp_path):
    holder = {}

    def raise_on_first(first_job):
        holder["ctx"].interrupts.signum = signal.SIGTERM
        raise SweepInterrupted(signal.SIGTERM)

    study = optuna.create_study(directions=["minimize"])
    trials = StudyTrials(study, tmp_path, ["minimize"], {"x": optuna.distributions.FloatDistribution(0, 1)})
    ctx = holder["ctx"] = SweepContext(LoopSettings(n_trials=4, n_jobs=2), tmp_path)
    run_sweep(ctx, trials, fake_launcher([OK], on_start=raise_on_first))
    assert _states(study) == [TrialState.FAIL, TrialState.FAIL] + [TrialState.WAITING] * 2
    assert ctx.early_end.exit_code == 143 and not ctx.running


def test_pruned_trials_count_as_finished_and_are_told_pruned(tmp_path):
    seen = []
    holder = {}

    def handles_attached(first_job):
        seen.append(sorted(holder["ctx"].handles.trials))

    study = optuna.create_study(directions=["minimize"])
    trials = StudyTrials(study, tmp_path, ["minimize"], {"x": optuna.distributions.FloatDistribution(0, 1)})
    ctx = holder["ctx"] = SweepContext(LoopSettings(n_trials=3, n_jobs=1, prunes=True), tmp_path)
    run_sweep(ctx, trials, fake_launcher([PRUNED, OK, PRUNED], on_start=handles_attached))
    assert _states(study) == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.PRUNED]
    assert study.trials[0].user_attrs[studies.RESULT_ATTR]["pruned"] is True
    assert seen == [[0], [1], [2]] and ctx.handles.trials == {}  # each job's trial, while it runs


def test_infeasible_trials_count_and_are_recorded_as_such(tmp_path):
    ctx, study = _sweep(tmp_path, fake_launcher([INFEASIBLE, OK]), n_trials=2, n_jobs=1)
    assert [studies.is_infeasible(t) for t in study.trials] == [True, False]
    assert study.trials[0].user_attrs[studies.RESULT_ATTR]["reason"] == "job 0 infeasible"
    assert ctx.early_end is None


def test_a_finished_study_runs_nothing(tmp_path):
    study = optuna.create_study(directions=["minimize"])
    study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions={
        "x": optuna.distributions.FloatDistribution(0, 1)}, values=[0.1]))
    trials = StudyTrials(study, tmp_path, ["minimize"], {"x": optuna.distributions.FloatDistribution(0, 1)})
    launcher = fake_launcher([OK])
    run_sweep(SweepContext(LoopSettings(n_trials=1), tmp_path), trials, launcher)
    assert launcher.started == []


def test_the_hook_takes_the_early_end_from_the_active_context_once(tmp_path):
    ctx, _ = _sweep(tmp_path, fake_launcher([FAIL]), n_trials=5, max_consecutive_failures=2)
    context.activate(ctx)
    assert context.release().early_end.exit_code == 1
    assert context.release() is None

