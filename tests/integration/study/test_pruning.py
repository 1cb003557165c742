"""Optuna pruning across the Hydra boundary: the pruner options, the checks before a sweep,
train() stopping at an epoch's end, and real sweeps that prune, here and through the RunPod
emulator (the job cancelled), after kill -9, and with several processes on one PostgreSQL study."""

from __future__ import annotations

import copy
import signal
from pathlib import Path

import optuna
import pytest
from conftest import TINY_OVERRIDES, TINY_RUN, compose_sweep, read_json, run_cli
from optuna.trial import TrialState
from test_distributed import postgres_url  # noqa: F401  (a fixture)
from test_resume import every_output_is_whole, start_sweep, wait_for

from cvsweep.config.objectives import epoch_value
from cvsweep.config.schema import ConfigError, Objective, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.study.pruning import PRUNER_TARGETS, check_pruning
from cvsweep.study.storage import RESULT_ATTR, n_counted
from cvsweep.sweep.preflight import check_sweep

# One good and one hopeless learning rate: after the first completed trial, a median pruner
# with n_startup_trials=1 stops every hopeless trial after its first epoch.
PRUNING = ["training.early_stopping_patience=0", "hydra.sweeper.pruner.n_startup_trials=1",
           "hydra.sweeper.params={training.learning_rate: 'choice(0.01, 0.000001)'}"]


def _run_config(**training) -> dict:
    data = copy.deepcopy(TINY_RUN)
    data["training"].update(training)
    return run_config_of(load_run_config(data))


# -- options and checks ------------------------------------------------------------------------
@pytest.mark.parametrize("option", list(PRUNER_TARGETS))
def test_every_pruner_option_makes_its_optuna_pruner_with_optunas_defaults(option):
    from hydra.utils import get_class, instantiate

    cfg = compose_sweep(f"hydra/sweeper/pruner={option}")
    pruner = instantiate(cfg.hydra.sweeper.pruner)
    assert type(pruner) is get_class(PRUNER_TARGETS[option])
    import inspect

    for name, param in inspect.signature(type(pruner)).parameters.items():
        assert name in cfg.hydra.sweeper.pruner  # every setting of Optuna's, none listed by hand
        if param.default is not inspect.Parameter.empty:
            assert cfg.hydra.sweeper.pruner[name] == param.default


def test_the_shipped_searches_prune_by_default():
    for search in ("cnn", "mnist", "mnist_fast"):
        try:
            cfg = compose_sweep(f"search={search}")
        except Exception:  # a preset not in this tree
            continue
        check_pruning(cfg)  # settles the default pruner (auto)
        assert cfg.hydra.sweeper.pruner._target_ != PRUNER_TARGETS["none"], search


OFF = ["hydra/sweeper/pruner=none"]
MEDIAN = "hydra/sweeper/pruner=median"  # named: the default (auto) never refuses these sweeps


@pytest.mark.parametrize("overrides, named, fix", [
    ([MEDIAN, "secondary_objectives=[params]", "hydra.sweeper.direction=[maximize,minimize]"],
     "Optuna cannot prune a multi-objective study", OFF),
    ([MEDIAN, "objective=params"], "objective=params has no value per epoch", OFF),
    ([MEDIAN, "objective=latency_ms"], "objective=latency_ms has no value per epoch", OFF),
    ([MEDIAN, "hydra/launcher=cvsweep", "hydra.sweeper.storage=null"], "hydra.sweeper.storage=null", OFF),
    ([MEDIAN, "hydra.sweeper.pruner.n_startup_trials=-1"],
     "hydra.sweeper.pruner (hydra/sweeper/pruner=median): Number of startup trials cannot be negative",
     ["hydra.sweeper.pruner.n_startup_trials=0"]),
    (["hydra/sweeper/pruner=percentile", "hydra.sweeper.pruner.percentile=150"],
     "hydra.sweeper.pruner (hydra/sweeper/pruner=percentile): ", ["hydra.sweeper.pruner.percentile=50"]),
])
def test_a_sweep_the_pruner_cannot_act_on_is_refused_before_it_starts(overrides, named, fix, tmp_path):
    with pytest.raises(ConfigError) as err:
        check_sweep(compose_sweep(*overrides, f"output_root={tmp_path}"))
    assert named in str(err.value)
    if fix == OFF:
        assert "hydra/sweeper/pruner=none" in str(err.value)
    check_sweep(compose_sweep(*overrides, *fix, f"output_root={tmp_path}"))  # the fix it names works


def test_the_value_a_pruner_sees_per_epoch_is_the_objectives():
    update = {"epoch": 2, "epochs": 5, "val_accuracy": 0.8, "val_loss": 0.5, "loss": 0.4}
    assert epoch_value(update, Objective.val_accuracy, 0.3) == 0.8
    assert epoch_value(update, Objective.val_loss, 0.3) == 0.5
    # health: the health part (measured after training) counted as 0, a lower bound
    assert epoch_value(update, Objective.health, 0.25) == pytest.approx(0.75 * 0.8)
    assert epoch_value(update, Objective.params, 0.3) is None
    assert epoch_value({**update, "val_accuracy": None}, Objective.val_accuracy, 0.3) is None


def test_a_pruner_written_as_a_value_is_refused_naming_the_group(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_sweep(compose_sweep("hydra.sweeper.pruner=median", f"output_root={tmp_path}"))
    assert "choose a pruner with hydra/sweeper/pruner=NAME" in str(err.value)


@pytest.mark.parametrize("value", [10**400, True, "0.9", float("nan"), None, [0.9]])
def test_a_worker_value_no_float_can_hold_is_no_value(value):
    from cvsweep.execution.runpod import _numbers_by_key

    assert epoch_value({"epoch": 1, "val_accuracy": value}, Objective.val_accuracy, 0.0) is None
    assert _numbers_by_key({"val_accuracy": [value]}) == {"val_accuracy": [None]}


def test_a_hostile_workers_progress_is_bounded_by_the_epochs_asked_for():
    from cvsweep.execution.runpod import _epoch_reports, _new_epoch, _reports_to

    def status(**update):
        return {"status": "IN_PROGRESS", "output": update}

    # An epoch beyond the run's, a bool, a float, backwards: not a new epoch.
    for epoch in (10**8, 9, True, 2.0, 1):
        assert _new_epoch(status(epoch=epoch, epochs=10**8), 1, 8) is None
    update = _new_epoch(status(epoch=3, epochs=8), 1, 8)
    # Without a history that covers the missed epoch, only the update itself is reported.
    assert _reports_to(update, 1, 8) == [{"epoch": 3, "epochs": 8}]
    history = {"val_accuracy": [0.5, 0.6, 0.7], "seconds": [1, 1, 1]}
    assert [r["epoch"] for r in _reports_to({**update, "history": history}, 1, 8)] == [2, 3]
    assert _epoch_reports({"val_accuracy": [0.5]}, 8, 0, 10**6) == []  # nothing built per claimed epoch


def test_a_poll_that_missed_an_epoch_records_the_epoch_the_pruner_judged():
    """The worker had run epoch 2 when the client first saw it; the pruner stops at epoch 1:
    the trial is pruned after epoch 1 (as the study records), its history keeps both."""
    from cvsweep.execution.runpod import RemoteJob, _reports_to

    job = RemoteJob(None, _run_config(epochs=8), prune=lambda report: report["epoch"] == 1)
    history = {"val_accuracy": [0.1, 0.2], "seconds": [1.0, 1.5]}
    update = {"epoch": 2, "epochs": 8, "val_accuracy": 0.2, "history": history}
    assert job._hand_on(_reports_to(update, 0, 8)) is True
    assert job.epochs_handed_on == 1
    job.ids = {"job_id": "j"}
    result = job.pruned({**update, "epoch": job.epochs_handed_on})
    assert result["status"] == "pruned" and result["pruned"]["epoch"] == 1 == result["metrics"]["epochs_run"]
    assert result["metrics"]["history"]["val_accuracy"] == [0.1, 0.2]


# -- train() and the training process ------------------------------------------------------------
@pytest.mark.slow
def test_a_run_the_pruner_stops_ends_at_that_epoch_pruned_unevaluated_and_unsaved(tmp_path):
    from cvsweep.training.process import TrainingProcess

    asked = []

    def prune(update: dict) -> bool:
        asked.append(update["epoch"])
        return update["epoch"] == 2

    training = TrainingProcess()  # the child round trip, as a local trial runs it
    try:
        result = training.run(_run_config(epochs=5, early_stopping_patience=0), model_dir=str(tmp_path), prune=prune)
        # The same child goes on serving: a run without a pruner completes.
        full = training.run(_run_config(epochs=2))
    finally:
        training.close()
    assert asked == [1, 2]
    assert result["status"] == "pruned" and result["pruned"] == {"epoch": 2}
    assert result["metrics"]["epochs_run"] == 2 and len(result["metrics"]["history"]["val_accuracy"]) == 2
    assert "test_accuracy" not in result["metrics"] and "health" not in result and "model" not in result
    assert not (tmp_path / "model.keras").exists()
    assert full["status"] == "completed" and full["metrics"]["epochs_run"] == 2


@pytest.mark.slow
def test_stop_ends_a_run_at_a_batch_end_in_the_same_warm_process():
    """How a worker stops a cancelled job's run (a pruned trial's, often): no process killed."""
    import threading

    from cvsweep.training.process import TrainingProcess

    training = TrainingProcess()
    training.start(wait=True)
    pid = training.pid
    try:
        training.stop()  # no run in progress: nothing to stop, nothing killed

        def progress(update: dict) -> None:
            if update["epoch"] == 2:
                threading.Thread(target=training.stop).start()

        stopped = training.run(_run_config(epochs=60, early_stopping_patience=0), progress=progress)
        after = training.run(_run_config(epochs=1))
        same_process = training.pid == pid
    finally:
        training.close()
    assert stopped["status"] == "failed" and stopped["failure"]["code"] == "interrupted", stopped["reason"]
    assert 2 <= stopped["metrics"]["epochs_run"] < 60 and "test_accuracy" not in stopped["metrics"]
    assert after["status"] == "completed" and same_process


# -- sweeps ------------------------------------------------------------------------------------
def _study(root: Path) -> optuna.Study:
    names = optuna.get_all_study_names(storage=f"sqlite:///{root}/optuna.db")
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=f"sqlite:///{root}/optuna.db")


def _check_pruned_trials(study: optuna.Study, epochs: int) -> list:
    """Every pruned trial: told PRUNED with the last value it reported, which its result.json
    records with the epochs it ran and their history; hopeless ones pruned, good ones kept."""
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned
    for trial in pruned:
        record = trial.user_attrs[RESULT_ATTR]
        assert record["pruned"] is True
        result = read_json(record["path"])
        assert result["status"] == "pruned", result["reason"]
        stopped = result["pruned"]
        assert stopped["pruner"] == "MedianPruner" and stopped["metric"] == "val_accuracy"
        assert 1 <= stopped["epoch"] < epochs
        assert trial.last_step == stopped["epoch"] and trial.value == stopped["value"]
        history = result["metrics"]["history"]["val_accuracy"]
        assert result["metrics"]["epochs_run"] == stopped["epoch"] <= len(history)
        assert history[stopped["epoch"] - 1] == pytest.approx(stopped["value"])
        assert not (Path(record["path"]).parent / "model.keras").exists()
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:  # reported every epoch, the last one included
            assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
            assert trial.params["training.learning_rate"] == 0.01 or trial.number == 0
    hopeless = [t for t in study.trials if t.params.get("training.learning_rate") == 1e-6 and t.number > 0]
    assert all(t.state == TrialState.PRUNED for t in hopeless)
    return pruned


@pytest.mark.slow
def test_a_local_sweep_prunes_hopeless_trials_after_their_first_epoch(tmp_path):
    epochs = 4
    proc = run_cli("-m", *TINY_OVERRIDES, f"training.epochs={epochs}", *PRUNING, "hydra.sweeper.n_trials=6",
                   "plots=summary", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = _study(tmp_path)
    pruned = _check_pruned_trials(study, epochs)
    assert any(t.params["training.learning_rate"] == 1e-6 for t in pruned)
    assert n_counted(study.trials) == 6 == len(study.trials)  # pruned trials are finished trials
    summary = read_json(next(tmp_path.glob("sweeps/*/summary.json")))
    assert summary["n_pruned"] == len(pruned) and summary["n_failed"] == 0
    assert summary["study"]["states"]["pruned"] == len(pruned)
    assert "Error executing job" not in proc.stdout + proc.stderr  # a pruned trial is no error
    assert f"{len(pruned)} pruned" in proc.stdout


@pytest.mark.slow
def test_a_remote_trial_the_pruner_stops_has_its_job_cancelled(runpod_env, tmp_path):
    epochs = 20
    proc = run_cli("-m", "executor=runpod", "executor.max_in_flight=1", "executor.poll_interval_s=0.2",
                   *TINY_OVERRIDES, f"training.epochs={epochs}", *PRUNING, "hydra.sweeper.n_trials=3",
                   "plots=none", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = _study(tmp_path)
    pruned = _check_pruned_trials(study, epochs)
    state = runpod_env.admin("state")
    results = {t.number: read_json(t.user_attrs[RESULT_ATTR]["path"]) for t in study.trials}
    for trial in pruned:
        remote = results[trial.number]["remote"]
        # The job was cancelled (its GPU stops billing), not left to run all its epochs.
        assert remote["job_id"] in state["cancelled"] and state["jobs"][remote["job_id"]]["status"] == "CANCELLED"
        assert results[trial.number]["executed_on"]["worker_id"] == remote["worker_id"] is not None
        # Its worker had not trained all its epochs when the cancel came (what it trained is
        # recorded, not only the epoch the pruner judged), and the next job went out after it.
        assert results[trial.number]["metrics"]["epochs_run"] <= remote["epochs_trained"] < epochs
        following = results.get(trial.number + 1)
        if following is not None:
            assert following["remote"]["submitted_at"] >= remote["cancelled_at"]


@pytest.mark.slow
def test_a_pruning_sweep_killed_mid_trial_finishes_with_the_same_command(tmp_path):
    epochs = 30
    args = ["-m", *TINY_OVERRIDES, f"training.epochs={epochs}", *PRUNING, "hydra.sweeper.n_trials=5",
            "plots=none", f"output_root={tmp_path}"]
    sweep = start_sweep(args)
    # Kill during the third trial, after at least one trial was pruned or completed.
    wait_for(lambda: any(tmp_path.glob("sweeps/*/2/progress.json")))
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = _study(tmp_path)
    states = [t.state for t in study.trials]
    assert TrialState.FAIL in states  # the killed trial, asked again
    assert n_counted(study.trials) == 5
    _check_pruned_trials(study, epochs)
    assert every_output_is_whole(tmp_path) > 5


@pytest.mark.slow
def test_several_processes_prune_in_one_postgres_study(tmp_path, postgres_url):  # noqa: F811
    import subprocess
    import sys
    import uuid

    from conftest import REPO

    name, epochs, n_trials = f"pruning-{uuid.uuid4().hex[:8]}", 4, 8
    sweeps = [
        subprocess.Popen([sys.executable, "-m", "cvsweep", "-m", *TINY_OVERRIDES, f"training.epochs={epochs}",
                          *PRUNING, f"hydra.sweeper.n_trials={n_trials}", "plots=none",
                          f"hydra.sweeper.storage={postgres_url}", f"hydra.sweeper.study_name={name}",
                          f"output_root={tmp_path / str(i)}"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    for sweep in sweeps:
        output = sweep.communicate(timeout=600)[0]
        assert sweep.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name=name, storage=postgres_url)
    assert n_trials <= n_counted(study.trials) <= n_trials + 1
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(read_json(t.user_attrs[RESULT_ATTR]["path"])["status"] == "pruned" for t in pruned)
