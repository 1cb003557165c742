"""Several sweep processes, one study in PostgreSQL: every trial record complete, none lost
or duplicated, and the same best trial whichever process reads it.

Needs a PostgreSQL server: .ci/run starts Debian's on 127.0.0.1 and sets
CVSWEEP_TEST_POSTGRES_URL; under CI=true (or CVSWEEP_REQUIRE_POSTGRES) it fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import optuna
import pytest
from conftest import REPO, TINY_OVERRIDES, read_json, require
from optuna.trial import TrialState

from cvsweep.study.storage import FIXED_ATTR, OWNER_ATTR, RESULT_ATTR, n_counted

PROCESSES = 3
N_TRIALS = 9
SWEPT = {"model.activation", "model.batch_norm", "model.dense_units", "model.dropout", "training.learning_rate"}


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("CVSWEEP_TEST_POSTGRES_URL")
    if not url and os.environ.get("CVSWEEP_REQUIRE_POSTGRES"):
        pytest.fail("CVSWEEP_REQUIRE_POSTGRES is set but CVSWEEP_TEST_POSTGRES_URL is not")
    require(bool(url), "PostgreSQL: set CVSWEEP_TEST_POSTGRES_URL (.ci/run starts one and sets it)")
    return url


@pytest.mark.slow
def test_three_sweep_processes_share_one_postgres_study(tmp_path, postgres_url):
    study_name = f"distributed-{uuid.uuid4().hex[:8]}"
    roots = [tmp_path / f"machine{i}" for i in range(PROCESSES)]
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", "cvsweep", "-m", *TINY_OVERRIDES, "training.epochs=1", "plots=none",
             f"hydra.sweeper.n_trials={N_TRIALS}", f"hydra.sweeper.storage={postgres_url}",
             f"hydra.sweeper.study_name={study_name}", f"output_root={root}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for root in roots
    ]
    outputs = [sweep.communicate(timeout=600)[0] for sweep in sweeps]
    for sweep, output in zip(sweeps, outputs):
        assert sweep.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    trials = study.trials
    # None lost or duplicated: numbers 0..n-1, each once; every one finished.
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # The target is met; concurrent processes may each start one more while the last ones run.
    assert N_TRIALS <= n_counted(trials) <= N_TRIALS + PROCESSES - 1
    # Every record is complete and matches the result.json it points at, 1:1.
    pids = {sweep.pid for sweep in sweeps}
    on_disk = {str(p.resolve()) for root in roots for p in root.glob("sweeps/*/*/result.json")}
    recorded = set()
    for t in trials:
        assert set(t.params) == SWEPT and len(t.values) == 1
        assert t.user_attrs[OWNER_ATTR]["pid"] in pids
        assert t.user_attrs[FIXED_ATTR]["output_root"] in {str(r) for r in roots}  # the command line's values
        path = t.user_attrs[RESULT_ATTR]["path"]
        result = read_json(path)
        assert result["status"] == "completed" and result["trial"]["objective_values"] == t.values
        recorded.add(path)
    assert recorded == on_disk and len(recorded) == len(trials)
    # Seeds per trial number: no two processes asked the same parameters.
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    # Every process did part of the work, and every one reports the same best trial.
    assert all(any(t.user_attrs[OWNER_ATTR]["pid"] == s.pid for t in trials) for s in sweeps)
    # Any machine re-running the command (nothing left to run) reports the same best trial,
    # with the host and path of its result.json.
    args = sweeps[0].args
    bests = []
    for root in roots:
        rerun = subprocess.run([*args[:-1], f"output_root={root}"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0 and "This run started no trial" in rerun.stdout, rerun.stderr[-3000:]
        summary = max(root.glob("sweeps/*/summary.json"), key=lambda p: p.parent.name)
        bests.append(read_json(summary)["study"]["best"])
    best = study.best_trial
    assert bests == [bests[0]] * PROCESSES
    assert bests[0][0]["number"] == best.number and bests[0][0]["values"] == best.values
    assert bests[0][0]["result"] == best.user_attrs[RESULT_ATTR]
