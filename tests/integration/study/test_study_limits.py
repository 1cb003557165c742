"""Study limits: ``hydra.sweeper.timeout_s``, the whole sweep's wall clock. When it runs out no
new trial starts; running trials finish, or with a pruner stop at their next epoch's end; the
summary, the report and the exit say the limit ended the sweep."""

from __future__ import annotations

import optuna
import pytest
from conftest import TINY_OVERRIDES, compose_sweep, read_json, run_cli
from optuna.trial import TrialState

from cvsweep.config.schema import ConfigError
from cvsweep.study.storage import RESULT_ATTR
from cvsweep.sweep.preflight import check_sweep


@pytest.mark.parametrize("value", ["0.0", "-5.0", "inf"])
def test_a_time_limit_that_is_no_time_is_refused(value, tmp_path):
    cfg = compose_sweep(f"hydra.sweeper.timeout_s={value}", f"output_root={tmp_path}")
    with pytest.raises(ConfigError, match=rf"hydra.sweeper.timeout_s={value}: allowed is a number of seconds > 0"):
        check_sweep(cfg)


def _study(root) -> optuna.Study:
    (name,) = optuna.get_all_study_names(storage=f"sqlite:///{root}/optuna.db")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/optuna.db")


@pytest.mark.slow
def test_the_time_limit_starts_no_new_trial_and_lets_the_running_one_finish(tmp_path):
    proc = run_cli("-m", *TINY_OVERRIDES, "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=200",
                   "hydra.sweeper.timeout_s=5", "plots=none", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "time limit (hydra.sweeper.timeout_s=5) ended it" in proc.stderr
    summary = read_json(next(tmp_path.glob("sweeps/*/summary.json")))
    assert "hydra.sweeper.timeout_s=5" in summary["ended_early"]["message"] and summary["ended_early"]["exit_code"] == 0
    trials = _study(tmp_path).trials
    assert 1 <= len(trials) < 200 and all(t.state == TrialState.COMPLETE for t in trials)  # none cut short
    assert summary["n_completed"] == len(trials)
    assert "Ended early" in next(tmp_path.glob("sweeps/*/report.html")).read_text()


@pytest.mark.slow
def test_with_a_pruner_the_time_limit_stops_running_trials_at_an_epoch_end(tmp_path):
    proc = run_cli("-m", *[o for o in TINY_OVERRIDES if not o.startswith("training.epochs")], "training.epochs=500",
                   "training.early_stopping_patience=0", "hydra.sweeper.n_trials=3", "hydra.sweeper.timeout_s=8",
                   "plots=none", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = _study(tmp_path).trials  # the first trial outlived the limit: no second one
    assert trial.state == TrialState.PRUNED
    result = read_json(trial.user_attrs[RESULT_ATTR]["path"])
    assert result["status"] == "pruned" and result["pruned"]["by"] == "timeout_s"
    assert "time limit (hydra.sweeper.timeout_s) ran out" in result["reason"]
    assert 1 <= result["metrics"]["epochs_run"] == result["pruned"]["epoch"] < 500
