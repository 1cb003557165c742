"""The default pruner, hydra/sweeper/pruner=auto: settled before the sweep from the objectives
table (the median pruner for one objective with a value per epoch, none otherwise), recorded
with why, and never the reason a valid sweep is refused; a pruner named is still checked."""

from __future__ import annotations

import pytest
from conftest import compose_sweep

from cvsweep.config.schema import OBJECTIVES, ConfigError
from cvsweep.study.pruning import PRUNER_TARGETS, auto_pruner, pruner_record
from cvsweep.sweep.preflight import check_sweep

TWO_OBJECTIVES = ["val_accuracy", "params"]


def expected(objectives: list[str]) -> str:
    """What auto settles on, read from the table without cvsweep's rule."""
    return "median" if len(objectives) == 1 and OBJECTIVES[objectives[0]].per_epoch else "none"


@pytest.mark.parametrize("objectives", [[name] for name in OBJECTIVES] + [TWO_OBJECTIVES],
                         ids=lambda names: "+".join(names))
def test_auto_prunes_exactly_one_objective_with_a_value_per_epoch(objectives):
    choice = auto_pruner(objectives)
    assert choice.name == expected(objectives)
    assert objectives[0] in choice.why
    # Trials that cannot reach their study trial are never pruned, whatever the objective.
    assert auto_pruner(objectives, "hydra/launcher=joblib runs trials elsewhere").name == "none"


@pytest.mark.parametrize("objectives", [[name] for name in OBJECTIVES] + [TWO_OBJECTIVES],
                         ids=lambda names: "+".join(names))
def test_every_objective_sweeps_with_the_default_pruner(objectives, tmp_path):
    """``cvsweep -m objective=X hydra.sweeper.n_trials=2 training.epochs=1``, no pruner typed:
    the checks before the sweep accept it and settle the pruner the sweeper is made with."""
    secondary = f"secondary_objectives=[{','.join(objectives[1:])}]"
    cfg = compose_sweep(f"objective={objectives[0]}", secondary, "hydra.sweeper.n_trials=2", "training.epochs=1",
                        "hydra.sweeper.storage=null", f"output_root={tmp_path}")
    assert cfg.hydra.runtime.choices["hydra/sweeper/pruner"] == "auto"
    check_sweep(cfg)
    name = expected(objectives)
    assert cfg.hydra.sweeper.pruner._target_ == PRUNER_TARGETS[name]
    record = pruner_record(cfg)
    assert record == {"name": name, "chosen_by": "auto", "why": auto_pruner(objectives).why}


def test_auto_keeps_the_median_pruners_settings_and_a_named_pruner_is_still_refused(tmp_path):
    cfg = compose_sweep("hydra.sweeper.pruner.n_warmup_steps=3", "hydra.sweeper.storage=null",
                        f"output_root={tmp_path}")
    check_sweep(cfg)
    assert cfg.hydra.sweeper.pruner._target_ == PRUNER_TARGETS["median"]
    assert cfg.hydra.sweeper.pruner.n_warmup_steps == 3 and cfg.hydra.sweeper.pruner.n_startup_trials == 5
    # Settings typed are checked even where auto settles on no pruner.
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.pruner \(hydra/sweeper/pruner=auto\): Number of startup"):
        check_sweep(compose_sweep("objective=params", "hydra.sweeper.pruner.n_startup_trials=-1",
                                  f"output_root={tmp_path}"))
    with pytest.raises(ConfigError, match=r"^hydra/sweeper/pruner=median: objective=train_seconds has no value per "
                                          r"epoch.*; set hydra/sweeper/pruner=none"):
        check_sweep(compose_sweep("objective=train_seconds", "hydra/sweeper/pruner=median", f"output_root={tmp_path}"))
    named = compose_sweep("hydra/sweeper/pruner=none", "hydra.sweeper.storage=null", f"output_root={tmp_path}")
    check_sweep(named)
    assert pruner_record(named) == {"name": "none", "chosen_by": "hydra/sweeper/pruner",
                                    "why": "hydra/sweeper/pruner=none"}


def test_auto_prunes_nothing_where_the_trials_cannot_reach_the_study(tmp_path):
    cfg = compose_sweep("hydra/launcher=cvsweep", "hydra.sweeper.storage=null", f"output_root={tmp_path}")
    check_sweep(cfg)  # a named median pruner is refused here (tests/integration/study/test_pruning.py)
    assert cfg.hydra.sweeper.pruner._target_ == PRUNER_TARGETS["none"]
    assert "hydra.sweeper.storage=null" in pruner_record(cfg)["why"]
