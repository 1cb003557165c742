"""What trials cost and the sweep's budget (hydra.sweeper.budget_usd), in-process: the sweep
loop over an in-memory Optuna study and a fake launcher whose jobs write prepared result.json
files, as the RunPod client writes them (``remote.cost_usd``). No Hydra, no training."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from fake_launcher import FakeLauncher
from omegaconf import OmegaConf

from cvsweep.config.schema import ConfigError
from cvsweep.reporting.progress import SweepProgress
from cvsweep.study import storage as studies
from cvsweep.study.cost import Spend, add_up, cost_record, spend_line, study_spend
from cvsweep.sweep.context import LoopSettings, SweepContext
from cvsweep.sweep.loop import run_sweep
from cvsweep.sweep.preflight import check_budget
from cvsweep.sweep.study_trials import StudyTrials
from cvsweep.sweep.trial import TrialFailed, TrialPruned

X = {"x": optuna.distributions.FloatDistribution(0, 1)}
LOCAL = object()  # a job that trained here: no "remote" in its result


def _result(cost) -> dict:
    if cost is LOCAL:
        return {"status": "completed", "executed_on": {"executor": "local"}}
    return {"status": "completed", "executed_on": {"executor": "runpod"},
            "remote": {"job_id": "j", "billed_ms": 1000, "cost_usd": cost}}


class CostlyJobs(FakeLauncher):
    """A fake launcher whose job N writes a result.json costing ``costs[N]`` (the last one for
    the jobs beyond the list) before it ends with ``outcome``."""

    def __init__(self, sweep_dir, costs, outcome=lambda job: 0.5, on_wait=None):
        def write(job):
            folder = sweep_dir / str(job)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "result.json").write_text(json.dumps(_result(costs[min(job, len(costs) - 1)])))

        super().__init__(outcome, on_wait=on_wait, before_end=write)


def _run(tmp_path, launcher, study=None, progress=None, **settings):
    study = study or optuna.create_study(directions=["minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    trials = StudyTrials(study, tmp_path, ["minimize"], X)
    ctx = SweepContext(LoopSettings(**{"max_failure_rate": 1.0, **settings}), tmp_path)
    if progress is not None:
        ctx.progress = progress
    run_sweep(ctx, trials, launcher)
    return ctx, study


def _records(study):
    return [t.user_attrs[studies.RESULT_ATTR] for t in study.get_trials(deepcopy=False)]


def test_each_trial_records_its_cost_and_a_local_one_none(tmp_path):
    launcher = CostlyJobs(tmp_path, [0.25, LOCAL, None])
    ctx, study = _run(tmp_path, launcher, n_trials=3)
    records = _records(study)
    assert records[0]["cost_usd"] == 0.25
    assert "cost_usd" not in records[1]  # ran here: no cost at all, not 0
    assert records[2]["cost_usd"] is None  # remote without a price: unknown
    assert (ctx.spent.usd, ctx.spent.priced, ctx.spent.unpriced) == (0.25, 1, 1)


def test_failed_and_pruned_remote_trials_are_billed_too(tmp_path):
    outcomes = {0: TrialFailed("worker died"), 1: TrialPruned("pruned after epoch 2")}
    launcher = CostlyJobs(tmp_path, [0.1, 0.2, 0.3], outcome=lambda job: outcomes.get(job, 0.5))
    _, study = _run(tmp_path, launcher, n_trials=2, prunes=True)
    assert [r["cost_usd"] for r in _records(study)] == [0.1, 0.2, 0.3]
    assert study_spend(study.get_trials()).usd == pytest.approx(0.6)


def test_the_budget_stops_the_next_trial_that_would_pass_it(tmp_path):
    launcher = CostlyJobs(tmp_path, [0.3])
    ctx, study = _run(tmp_path, launcher, n_trials=10, budget_usd=1.0)
    assert launcher.started == [0, 1, 2]  # 0.9 spent; a fourth at about 0.3 would pass 1.0
    assert ctx.early_end.exit_code == 0
    assert "hydra.sweeper.budget_usd=1" in ctx.early_end.message and "$0.90" in ctx.early_end.message
    assert "3 of n_trials=10 finished" in ctx.early_end.message


def test_the_trials_in_flight_count_at_the_mean_cost_of_the_priced_ones(tmp_path):
    # Three start before any cost is known. After job 0 (0.25): 0.25 spent + 2 in flight x 0.25
    # leaves room for one more; after job 1, 0.5 + 2 x 0.25 leaves none.
    launcher = CostlyJobs(tmp_path, [0.25])
    ctx, _ = _run(tmp_path, launcher, n_trials=10, n_jobs=3, budget_usd=1.0)
    assert launcher.started == [0, 1, 2, 3]
    assert ctx.spent.usd == pytest.approx(1.0) and ctx.early_end.exit_code == 0


def test_a_spend_equal_to_the_budget_fits_it(tmp_path):
    launcher = CostlyJobs(tmp_path, [0.1])
    ctx, _ = _run(tmp_path, launcher, n_trials=20, budget_usd=0.3)
    assert launcher.started == [0, 1, 2]  # 0.1 + 0.1 + 0.1 in floats is a hair over 0.3


def test_a_rerun_of_a_spent_study_starts_nothing_and_exits_0(tmp_path):
    first = CostlyJobs(tmp_path / "first", [0.5])
    _, study = _run(tmp_path / "first", first, n_trials=10, budget_usd=1.0)
    again = CostlyJobs(tmp_path / "again", [0.5])
    ctx, _ = _run(tmp_path / "again", again, study=study, n_trials=10, budget_usd=1.0)
    assert first.started == [0, 1] and again.started == []
    assert ctx.early_end.exit_code == 0 and "$1.00" in ctx.early_end.message


def test_the_budget_counts_what_other_processes_spent_on_the_study(tmp_path):
    study = optuna.create_study(directions=["minimize"])
    for value in (0.1, 0.2):  # another sweep process's trials, told with their records
        study.add_trial(optuna.trial.create_trial(params={"x": value}, distributions=X, values=[value],
                                                  user_attrs={studies.RESULT_ATTR: {"cost_usd": 0.4}}))
    launcher = CostlyJobs(tmp_path, [0.4])
    ctx, _ = _run(tmp_path, launcher, study=study, n_trials=10, budget_usd=2.0)
    assert launcher.started == [0, 1, 2]  # 0.8 before this run: room for three more at 0.4
    assert ctx.spent.usd == pytest.approx(2.0) and "n_trials=10" in ctx.early_end.message


def test_without_a_budget_the_cost_is_summed_and_every_trial_runs(tmp_path):
    progress = SweepProgress(5, 0, ["val_loss"], ["minimize"], live=False, poll_s=60)
    launcher = CostlyJobs(tmp_path, [0.125])
    ctx, _ = _run(tmp_path, launcher, progress=progress, n_trials=5, n_jobs=2)
    assert len(launcher.started) == 5 and ctx.early_end is None
    assert ctx.spent.usd == pytest.approx(0.625)
    assert "spent $0.6250" in progress._summary_line()


def test_a_local_sweep_shows_no_spend_in_its_progress(tmp_path):
    progress = SweepProgress(2, 0, ["val_loss"], ["minimize"], live=False, poll_s=60)
    _run(tmp_path, CostlyJobs(tmp_path, [LOCAL]), progress=progress, n_trials=2)
    assert "spent" not in progress._summary_line()


def test_the_spend_says_unknown_where_remote_trials_have_no_price():
    assert add_up([{"cost_usd": None}, {}]).text().startswith("unknown (1 remote trials")
    mixed = add_up([{"cost_usd": 1.5}, {"cost_usd": None}, {"cost_usd": None}])
    assert mixed.text() == "$1.50 + unknown for 2 trials (no executor.price_per_hour)"
    assert mixed.fields() == {"cost_usd": 1.5, "cost_unknown_trials": 2}
    assert add_up([{}, None]).fields() == {} and spend_line({}, {}) is None
    assert "this run's trials $1.50" in spend_line(mixed.fields(), Spend(3.0, 2).fields())


@pytest.mark.parametrize("cost", [True, "1.0", -0.5, math.nan, math.inf])
def test_a_cost_that_is_no_amount_is_unknown(cost):
    assert cost_record(_result(cost)) == {"cost_usd": None}


def _config(budget, executor="runpod", price=None):
    runpod = {"name": "runpod", **({"price_per_hour": price} if price is not None else {})}
    return OmegaConf.create({"hydra": {"sweeper": {"budget_usd": budget}},
                             "executor": runpod if executor == "runpod" else {"name": "local"}})


@pytest.mark.parametrize("budget", [0, -1, "ten", True, math.inf])
def test_a_budget_that_is_no_positive_amount_is_refused(budget):
    with pytest.raises(ConfigError, match=r"hydra.sweeper.budget_usd=.*allowed is a number of US dollars > 0"):
        check_budget(_config(budget, price=4.0))


def test_a_budget_is_refused_where_nothing_would_count_against_it():
    with pytest.raises(ConfigError, match="executor=local trains on this machine and costs nothing"):
        check_budget(_config(5.0, executor="local"))
    with pytest.raises(ConfigError, match="no executor.price_per_hour"):
        check_budget(_config(5.0))
    check_budget(_config(5.0, price=4.176))
    check_budget(_config(None, executor="local"))


def test_the_checks_before_a_sweep_refuse_a_budget_for_a_local_sweep(tmp_path):
    from conftest import compose_sweep

    from cvsweep.sweep.preflight import check_sweep

    cfg = compose_sweep("hydra.sweeper.budget_usd=5", f"output_root={tmp_path}")
    with pytest.raises(ConfigError, match=r"hydra.sweeper.budget_usd=5.0: executor=local .* costs nothing"):
        check_sweep(cfg)
    assert not (tmp_path / "sweeps").exists()
