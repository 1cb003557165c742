"""One rule for which trial is best (cvsweep/study/ranking.py), and everything that asks it
agreeing on a study with ties and on one with a Pareto front: summary.json's best and its
study's best, artifacts=best's kept models, plots=best's and plots=all's trials, the service's
view and ``cvsweep evaluate SWEEP``. The trial folders and the study are written as
a sweep leaves them, with prepared values: nothing trains."""

from __future__ import annotations

import hashlib
import io
import json
import socket
from pathlib import Path

import optuna
import pytest
from conftest import TINY_RUN, compose_sweep
from rich.console import Console

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.objectives import directions_of
from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.layout import MODEL, result_of
from cvsweep.reporting.given_paths import result_to_evaluate
from cvsweep.reporting.summary import TRIALS_PLOTTED, plotted_folders, summarize_sweep
from cvsweep.service import store
from cvsweep.service.snapshot import sweep_view
from cvsweep.study import ranking
from cvsweep.study.storage import RESULT_ATTR
from cvsweep.sweep.keep_models import keep_best

CONFIG = run_config_of(load_run_config(TINY_RUN))
STUDY = "ranking"

# One objective (val_accuracy, maximize): jobs 2 and 10 tie for best ("10" sorts before "2" as
# a string); job 4 meets no constraint though its value is the highest.
ONE = {0: [0.5], 1: [0.7], 2: [0.9], 3: [0.1], 4: [0.99], 5: [0.7], 6: [0.3], 7: [0.2], 8: [0.6], 9: [0.4],
       10: [0.9], 11: [0.8]}
ONE_RANKED = [2, 10, 11, 1, 5, 8, 0, 9, 6, 7, 3]
# Two objectives (health: maximize, params: minimize): job 1 is dominated by job 0; jobs 2 and 4
# tie on both; job 5 would dominate them all but misses a constraint.
TWO = {0: [0.9, 500], 1: [0.8, 900], 2: [0.95, 800], 3: [0.1, 10], 4: [0.95, 800], 5: [0.99, 5]}
TWO_RANKED = [2, 4, 0, 3]
MISSES = {4: ONE, 5: TWO}
TWO_OBJECTIVES = ("objective=health", "secondary_objectives=[params]", "hydra.sweeper.direction=[maximize,minimize]")


def _trial(folder: Path, values: list[float], misses: bool) -> Path:
    """A completed trial's folder as a sweep leaves it: result.json and the model.keras whose
    size and sha256 it records."""
    folder.mkdir(parents=True)
    data = folder.name.encode() * 10
    (folder / MODEL).write_bytes(data)
    record = {"status": "completed", "config": CONFIG, "fingerprint": fingerprint(CONFIG),
              "metrics": {"test_loss": 1.0, "test_accuracy": 0.5}, "trial": {"objective_values": values},
              "constraints": {"min_val_accuracy": 0.2 if misses else -0.2},
              "model": {"path": MODEL, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    result_of(folder).write_text(json.dumps(record))
    return folder


def _sweep(tmp_path: Path, values: dict[int, list[float]], *overrides: str):
    """A finished sweep of these trials (job number = trial number), its study and its config."""
    sweep_dir = tmp_path / "sweeps" / "20260101-000000-abcdef"
    cfg = compose_sweep(*overrides, "artifacts=best", "plots=none", f"output_root={tmp_path}",
                        f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.study_name={STUDY}")
    directions = directions_of(cfg)
    study = optuna.create_study(storage=cfg.hydra.sweeper.storage, study_name=STUDY, directions=directions)
    for job, trial_values in values.items():
        misses = MISSES.get(job) is values
        folder = _trial(sweep_dir / str(job), trial_values, misses)
        where = {"host": socket.gethostname(), "path": str(result_of(folder)), "artifact_id": None}
        study.add_trial(optuna.trial.create_trial(
            values=trial_values, user_attrs={RESULT_ATTR: where},
            system_attrs={"constraints:min_val_accuracy": 0.2 if misses else -0.2}))
    return sweep_dir, study, cfg


def _service_view(sweep_dir: Path, cfg) -> dict:
    """The service's view of the sweep, once it finished."""
    request = {"client_overrides": [], "created_at": "2026-01-01T00:00:00+00:00", "objectives": ["x"],
               "directions": directions_of(cfg), "params": [], "already_finished": 0, "n_trials": 20,
               "study": {}}
    (sweep_dir / store.REQUEST_FILE).write_text(json.dumps(request))
    store.write_state(sweep_dir, status=store.FINISHED)
    return sweep_view(sweep_dir)


@pytest.mark.parametrize(("values", "overrides", "expected"), [
    (ONE, (), ONE_RANKED),
    (TWO, TWO_OBJECTIVES, TWO_RANKED),
], ids=["one-objective-with-ties", "pareto-front"])
def test_every_caller_names_the_same_best_trials(values, overrides, expected, tmp_path):
    sweep_dir, study, cfg = _sweep(tmp_path, values, *overrides)
    directions = directions_of(cfg)
    best_jobs = expected if len(directions) > 1 else expected[:1]
    folders = [sweep_dir / str(job) for job in expected]

    # The rule over the study agrees with Optuna's own answer (which leaves ties unordered).
    assert [t.number for t in ranking.study_best(study)] == best_jobs
    if len(directions) > 1:
        assert sorted(t.number for t in study.best_trials) == sorted(best_jobs)
    else:
        assert study.best_value == values[best_jobs[0]][0]

    kept = keep_best(cfg)  # as the sweep: artifacts=best first, then the summary
    assert sorted(p.parent for p in sweep_dir.glob(f"*/{MODEL}")) == sorted(sweep_dir / str(j) for j in best_jobs)
    assert sorted(int(Path(d["folder"]).name) for d in kept["deleted"]) == sorted(set(values) - set(best_jobs))

    summary = summarize_sweep(cfg, console=Console(file=io.StringIO()), kept_models=kept)
    assert summary["best"]["job"] == str(expected[0])
    assert [b["number"] for b in summary["study"]["best"]] == best_jobs
    assert summary["best_model"]["trial_dir"] == str(folders[0].resolve())
    assert plotted_folders("best", summary, directions, sweep_dir) == [folders[0].resolve()]
    assert plotted_folders("all", summary, directions, sweep_dir) == folders[:TRIALS_PLOTTED]

    assert result_to_evaluate(str(sweep_dir)) == result_of(folders[0].resolve())

    view = _service_view(sweep_dir, cfg)
    assert view["best"]["job"] == expected[0]
    assert [b["number"] for b in view["study"]["best"]] == best_jobs


def test_the_summary_of_a_sweep_without_a_study_names_the_same_best(tmp_path):
    sweep_dir, _, cfg = _sweep(tmp_path, TWO, *TWO_OBJECTIVES)
    cfg.hydra.sweeper.storage = None
    kept = keep_best(cfg)
    assert sorted(int(p.parent.name) for p in sweep_dir.glob(f"*/{MODEL}")) == sorted(TWO_RANKED)
    summary = summarize_sweep(cfg, console=Console(file=io.StringIO()), kept_models=kept)
    assert summary["best"]["job"] == str(TWO_RANKED[0])
    assert [t["job"] for t in summary["pareto_front"]] == [str(j) for j in sorted(TWO_RANKED)]  # job order
    assert result_to_evaluate(str(sweep_dir)) == result_of((sweep_dir / str(TWO_RANKED[0])).resolve())


def _row(job: int, *values: float, **more) -> dict:
    return {"job": str(job), "status": "completed", "objective_values": list(values), **more}


def test_ties_keep_the_order_given_and_directions_turn_the_order():
    rows = [_row(0, 0.5), _row(1, 0.9), _row(2, 0.7), _row(3, 0.9), _row(4, 0.1)]
    assert [r["job"] for r in ranking.ranked(rows, ["maximize"])] == ["1", "3", "2", "0", "4"]
    assert [r["job"] for r in ranking.ranked(rows, ["minimize"])] == ["4", "0", "2", "1", "3"]
    assert ranking.best(rows[::-1], ["maximize"])["job"] == "3"  # the order given decides a tie
    assert [r["job"] for r in ranking.best_trials(rows, ["maximize"])] == ["1"]
    assert [r["job"] for r in ranking.top(rows, ["maximize"], 2)] == ["1", "3"]
    assert ranking.best([], ["maximize"]) is None and ranking.best_trials([], ["maximize", "minimize"]) == []


def test_only_completed_trials_that_meet_the_constraints_compete():
    rows = [_row(0, 0.5), _row(1, 0.9, violates=["min_val_accuracy"]), _row(2, 0.7, status="pruned"),
            {"job": "3", "status": "failed", "objective_values": None}, _row(4, 0.6)]
    assert [r["job"] for r in ranking.competing_rows(rows)] == ["0", "4"]
    assert ranking.best_row(rows, ["maximize"])["job"] == "4"


def test_the_pareto_front_is_optunas_and_ranked_by_the_first_objective():
    rows = [_row(0, 0.9, 500), _row(1, 0.8, 900), _row(2, 0.95, 800), _row(3, 0.1, 10)]
    assert [r["job"] for r in ranking.pareto_front(rows, ["maximize", "minimize"])] == ["0", "2", "3"]
    assert [r["job"] for r in ranking.best_trials(rows, ["maximize", "minimize"])] == ["2", "0", "3"]
    study = optuna.create_study(directions=["maximize", "minimize"])
    for row in rows:
        study.add_trial(optuna.trial.create_trial(values=row["objective_values"]))
    assert [t.number for t in ranking.study_best(study)] == [2, 0, 3]
    assert sorted(t.number for t in study.best_trials) == [0, 2, 3]
