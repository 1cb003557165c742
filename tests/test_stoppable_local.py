"""Issue 14, local trials: a hard time limit that kills a trial which never reaches a batch
end (here: reading a FIFO), every failure as a result.json with its class, and models over
the size limits refused before a sweep starts."""

from __future__ import annotations

import copy
import os
import time

import pytest

from conftest import TINY_OVERRIDES, TINY_RUN, read_json, run_cli
from cvsweep import failures
from cvsweep.executors import LocalExecutor
from cvsweep.training_process import GRACE_S


@pytest.mark.slow
def test_a_trial_stuck_reading_a_fifo_is_killed_at_its_hard_limit(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    run = copy.deepcopy(TINY_RUN)
    run["dataset"].update(name="npz", path=str(fifo), pixel_scale=255.0, test_fraction=None)
    run["training"]["time_budget_s"] = 1.0
    started = time.monotonic()
    result = LocalExecutor(None).run(run)
    took = time.monotonic() - started
    assert result["status"] == "failed" and result["failure"]["code"] == failures.DATA_ERROR, result
    assert result["infeasible"] is False  # a read that never returns says nothing about the config
    assert "time budget exceeded" in result["reason"]
    assert 1.0 + GRACE_S <= took < 1.0 + GRACE_S + 15  # the child's start-up (TensorFlow) comes first
    again = LocalExecutor(None).run(copy.deepcopy(TINY_RUN))  # a fresh training process serves the next
    assert again["status"] == "completed"


def test_classify_each_exception():
    tf = pytest.importorskip("tensorflow")
    oom = failures.classify(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"),
                            failures.MODEL, params=1234567)
    assert oom.code == failures.OUT_OF_MEMORY and oom.infeasible and "1,234,567 parameters" in oom.reason
    assert failures.classify(MemoryError(), failures.FIT).code == failures.OUT_OF_MEMORY
    data_oom = failures.classify(MemoryError("Unable to allocate 8 TiB"), failures.DATA)
    assert data_oom.code == failures.OUT_OF_MEMORY and not data_oom.infeasible
    unpickle = failures.classify(TypeError("_reconstruct: bad arguments"), failures.DATA)
    assert unpickle.code == failures.DATA_ERROR and not unpickle.infeasible
    nul = failures.classify(ValueError("embedded null byte"), failures.DATA)
    assert nul.code == failures.DATA_ERROR
    bug = failures.classify(KeyError("x"), failures.FIT)
    assert bug.code == failures.INTERNAL_ERROR and not bug.infeasible and "KeyError" in bug.reason


@pytest.mark.slow
def test_a_trial_that_runs_out_of_memory_leaves_a_result_json(tmp_path):
    proc = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=1", "hydra.sweeper.max_consecutive_failures=1",
                   "model.conv_layers=3", "model.filters=1024", "model.filter_growth=4", "model.kernel_size=1",
                   "model.pooling=none", "model.dense_layers=1", "model.dense_units=8192", "training.batch_size=1",
                   "training.max_params=100000000000", "training.max_activation_mb=10000000", "plots=none",
                   f"output_root={tmp_path}")
    results = list((tmp_path / "sweeps").glob("*/0/result.json"))
    assert results, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = read_json(results[0])
    assert result["failure"]["code"] == "out_of_memory" and result["infeasible"] is True, result
    assert "Traceback" not in proc.stderr


def test_preflight_refuses_a_search_space_that_reaches_the_size_limit(tmp_path):
    proc = run_cli("-m", *TINY_OVERRIDES, "model.filters=choice(8, 1024)", "model.filter_growth=4",
                   "model.conv_layers=3", "model.dense_layers=1", "model.dense_units=8192",
                   f"output_root={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model.filters=choice(8, 1024) reaches model.filters=1024: training.max_params=50000000" in proc.stderr
    assert not (tmp_path / "sweeps").exists()
