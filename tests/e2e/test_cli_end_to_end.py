"""``python -m cvsweep`` for real, in a subprocess: single runs and Optuna sweeps that train
on digits and leave complete snapshots."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import optuna
import pytest
from conftest import REPO, TINY_OVERRIDES, read_json, run_cli

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.reporting.plots import TRIAL_PLOTS

RESULT_KEYS = {"schema_version", "fingerprint", "config", "status", "reason", "metrics", "data", "executed_on", "versions", "trial"}


def _only(paths):
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def _check_result(result: dict) -> None:
    assert RESULT_KEYS <= set(result)
    # The snapshot's config is complete and valid on its own, and its fingerprint is its hash.
    assert result["fingerprint"] == fingerprint(run_config_of(load_run_config(result["config"])))
    assert result["executed_on"]["executor"] == "local"
    if result["status"] == "completed":
        assert 0.0 <= result["metrics"]["val_accuracy"] <= 1.0
        assert result["metrics"]["history"]["loss"]


@pytest.mark.slow
def test_single_run_leaves_hydra_files_and_result(tmp_path):
    proc = run_cli(*TINY_OVERRIDES, f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    run_dir = _only((tmp_path / "runs").iterdir())
    assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= {p.name for p in (run_dir / ".hydra").iterdir()}
    result = read_json(run_dir / "result.json")
    _check_result(result)
    assert result["status"] == "completed"
    assert result["config"]["training"]["epochs"] == 2
    assert result["trial"]["choices"]["model"] == "cnn"
    assert all((run_dir / name).read_bytes().startswith(b"\x89PNG") for name in TRIAL_PLOTS)  # plots=all: at its end


@pytest.fixture(scope="module")
def sweep(tiny_sweep):
    """Three trials of the default search space (model=cnn), made tiny (conftest's shared sweep)."""
    return tiny_sweep


@pytest.mark.slow
def test_sweep_writes_a_result_per_trial(sweep):
    root, _ = sweep
    sweep_dir = _only((root / "sweeps").iterdir())
    results = [read_json(sweep_dir / str(job) / "result.json") for job in range(3)]
    for result in results:
        _check_result(result)
        assert result["status"] == "completed"
    # The search space was sampled: the trials differ, and their fingerprints say so.
    assert len({r["fingerprint"] for r in results}) == 3
    # Overrides from the command line held in every trial.
    assert all(r["config"]["model"]["filters"] == 8 for r in results)


@pytest.mark.slow
def test_sweep_summary_table_and_study(sweep):
    root, proc = sweep
    sweep_dir = _only((root / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    assert (summary["n_trials"], summary["n_completed"], summary["n_failed"]) == (3, 3, 0)
    objectives = {t["job"]: t["objective"] for t in summary["trials"]}
    assert summary["best"]["objective"] == max(objectives.values())
    best_result = read_json(sweep_dir / summary["best"]["job"] / "result.json")
    assert summary["best"]["config"] == best_result["config"]
    assert summary["best"]["objective"] == best_result["metrics"]["val_accuracy"]  # validation, not test
    assert set(summary["trials"][0]["params"]) >= {"training.learning_rate", "model.activation"}
    # The table on the terminal.
    assert "Sweep " in proc.stdout and "3 completed, 0 failed" in proc.stdout and "Best: job" in proc.stdout
    # The Optuna study lives on in SQLite, with the same objective values.
    study = optuna.load_study(study_name=summary["study"]["name"], storage=f"sqlite:///{root}/optuna.db")
    assert sorted(t.value for t in study.trials) == sorted(objectives.values())
    # Named after dataset, model and search, plus the hash of the experiment (study identity).
    assert re.fullmatch(r"digits-cnn-cnn-[0-9a-f]{8}", summary["study"]["name"])


@pytest.mark.slow
def test_infeasible_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    # Seeded sampler: some trials draw the 1 ms budget. That configuration cannot train: an
    # answer, counted towards n_trials and told to Optuna so that its sampler avoids it.
    proc = run_cli(
        "-m", "search=base", "training.time_budget_s=choice(0.001, 600)", "hydra.sweeper.n_trials=4",
        *TINY_OVERRIDES, "training.epochs=1", "plots=none", f"output_root={tmp_path}",  # what is counted, not drawn
    )
    assert proc.returncode == 0, proc.stderr
    sweep_dir = _only((tmp_path / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    assert summary["n_trials"] == 4 and summary["n_completed"] >= 1
    assert summary["n_failed"] == summary["n_infeasible"] >= 1
    assert summary["study"]["states"] == {"complete": summary["n_completed"], "infeasible": summary["n_infeasible"]}
    for trial in summary["trials"]:
        result = read_json(sweep_dir / trial["job"] / "result.json")
        _check_result(result)
        if result["status"] == "failed":
            assert result["config"]["training"]["time_budget_s"] == 0.001 and result["infeasible"] is True
            assert result["reason"].startswith("time budget exceeded") and trial["status"] == "infeasible"
    study = optuna.load_study(study_name=summary["study"]["name"], storage=f"sqlite:///{tmp_path}/optuna.db")
    # Told as PRUNED (the state Optuna's samplers rank below every completed trial; FAIL they
    # never see), with why, from its result.json.
    infeasible = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(infeasible) == summary["n_infeasible"]
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    for trial in infeasible:
        record = trial.user_attrs["cvsweep.result"]
        assert record["infeasible"] is True and record["reason"].startswith("time budget exceeded")
        assert read_json(record["path"])["reason"] in record["reason"]
    assert "Infeasible configuration: time budget exceeded" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_a_sweep_where_every_trial_is_infeasible_ends_with_its_summary(tmp_path):
    proc = run_cli("-m", "search=base", "training.time_budget_s=0.001", "hydra.sweeper.n_trials=2",
                   *TINY_OVERRIDES, "plots=none", f"output_root={tmp_path}")
    assert proc.returncode == 1  # nothing completed: a script must be able to tell
    summary = read_json(_only((tmp_path / "sweeps").iterdir()) / "summary.json")
    assert (summary["n_completed"], summary["n_failed"], summary["best"]) == (0, 2, None)
    assert "No trial completed." in proc.stdout and "cvsweep: no trial of this run completed" in proc.stderr


@pytest.mark.slow
def test_a_failed_download_is_a_reason_with_the_way_out_not_a_traceback(tmp_path):
    """Keras's downloaders on a machine that cannot reach the internet (forced here through a
    closed proxy port, and an empty Keras cache)."""
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    proc = subprocess.run([sys.executable, "-m", "cvsweep", "dataset=fashion_mnist", f"output_root={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "cvsweep: the run failed: dataset=fashion_mnist: the download failed" in proc.stderr
    assert "set dataset.path to a local copy" in proc.stderr and "Traceback" not in proc.stderr
    result = read_json(next(tmp_path.glob("runs/*/result.json")))
    assert result["status"] == "failed" and result["infeasible"] is False and "download failed" in result["reason"]
