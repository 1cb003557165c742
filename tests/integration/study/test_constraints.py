"""Study constraints (hydra.sweeper.constraints): Optuna's constraint values on each trial, a
model over max_params refused before it trains, and the summary and report marking the trials
that miss a constraint and naming the best feasible one."""

from __future__ import annotations

import optuna
import pytest
from conftest import compose_sweep, read_json, run_cli
from optuna.trial import TrialState

from cvsweep.config.schema import ConfigError
from cvsweep.study.constraints import values, violated
from cvsweep.study.identity import identity_of
from cvsweep.study.storage import RESULT_ATTR
from cvsweep.sweep.preflight import check_sweep


@pytest.mark.parametrize("override, words", [
    ("hydra.sweeper.constraints.max_params=0", "a whole number >= 1"),
    ("hydra.sweeper.constraints.max_params=10.5", "a whole number >= 1"),
    ("hydra.sweeper.constraints.min_val_accuracy=1.5", "[0, 1]"),
])
def test_a_constraint_no_trial_could_mean_is_refused(override, words, tmp_path):
    with pytest.raises(ConfigError, match=rf"hydra.sweeper.constraints.*{words[:10]}"):
        check_sweep(compose_sweep(override, f"output_root={tmp_path}"))


def test_constraint_values_are_optunas_sign_and_in_the_identity():
    limits = {"max_params": 1000, "min_val_accuracy": 0.9}
    assert values({"params": 1500, "val_accuracy": 0.95}, limits) == {"max_params": 500.0,
                                                                        "min_val_accuracy": pytest.approx(-0.05)}
    assert violated(values({"params": 900, "val_accuracy": 0.8}, limits)) == ["min_val_accuracy"]
    plain = identity_of(compose_sweep())
    constrained = identity_of(compose_sweep("hydra.sweeper.constraints.min_val_accuracy=0.9"))
    assert constrained == {**plain, "constraint min_val_accuracy": 0.9}  # unset: the identity as before


@pytest.mark.slow
def test_a_sweep_with_constraints_tells_optuna_and_reports_the_best_feasible_trial(tmp_path):
    # filters 8 or 32 with one dense layer of 32 on 8x8 digits: about 4,500 and 17,000 parameters.
    proc = run_cli("-m", "model.conv_layers=1", "model.dense_layers=1", "model.dense_units=32", "training.epochs=2",
                   "search=base", "model.filters=choice(8, 32)", "training.learning_rate=choice(0.01, 0.0001)",
                   "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=6",
                   "hydra.sweeper.constraints.max_params=10000", "hydra.sweeper.constraints.min_val_accuracy=0.5",
                   "plots=none", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (name,) = optuna.get_all_study_names(storage=f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")
    summary = read_json(next(tmp_path.glob("sweeps/*/summary.json")))
    big = [t for t in study.trials if t.params["model.filters"] == 32]
    small = [t for t in study.trials if t.params["model.filters"] == 8]
    assert big and small
    for trial in big:  # refused before training: infeasible, with its constraint value
        result = read_json(trial.user_attrs[RESULT_ATTR]["path"])
        assert trial.state == TrialState.PRUNED and result["failure"]["code"] == "constraint"
        assert "max_params=10000" in result["reason"] and result["metrics"]["params"] > 10000
        assert trial.constraints["max_params"] == result["constraints"]["max_params"] > 0
        assert "history" not in result["metrics"]  # it never trained
    for trial in small:
        result = read_json(trial.user_attrs[RESULT_ATTR]["path"])
        assert trial.state == TrialState.COMPLETE and trial.constraints["max_params"] <= 0
        assert trial.constraints["min_val_accuracy"] == pytest.approx(0.5 - result["metrics"]["val_accuracy"])
    feasible = [t for t in small if t.constraints["min_val_accuracy"] <= 0]
    if feasible:  # Optuna's best and the summary's best: the best feasible trial
        assert study.best_trial.number in [t.number for t in feasible]
        assert summary["best"]["job"] in [str(t.user_attrs[RESULT_ATTR]["path"]).split("/")[-2] for t in feasible]
    rows = {row["job"]: row for row in summary["trials"]}
    missing = [row for row in rows.values() if row["violates"]]
    assert summary["n_missing_constraints"] == len(missing) >= len(big)
    assert summary["constraints"] == {"max_params": 10000, "min_val_accuracy": 0.5}
    report = next(tmp_path.glob("sweeps/*/report.html")).read_text()
    assert "constraints.max_params=10000: this model has" in report and "Constraints" in report
    assert "trials miss them" in proc.stdout
