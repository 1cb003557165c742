"""Issue 14, local trials: a hard time limit that kills a trial which never reaches an epoch
end, a FIFO refused unread, every failure as a result.json with its class, and models over the
size limits refused before a sweep starts."""

from __future__ import annotations

import copy
import os
import time

import pytest
from conftest import SHARED_MNIST, TINY_OVERRIDES, TINY_RUN, as_the_command_checks, read_json, require, run_cli

from cvsweep.execution.executors import LocalExecutor
from cvsweep.training import failures
from cvsweep.training.process import GRACE_S


@pytest.mark.slow
def test_a_fifo_is_refused_unread_without_a_hang(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: none will
    run = copy.deepcopy(TINY_RUN)
    run["dataset"].update(name="npz", path=str(fifo), pixel_scale=255.0, test_fraction=None)
    result = LocalExecutor(None).run(run)
    assert result["status"] == "failed" and result["failure"]["code"] == failures.DATA_ERROR, result
    assert result["infeasible"] is False and "not a regular file (a FIFO)" in result["reason"]


@pytest.mark.slow
def test_a_batch_that_outlasts_the_budget_is_killed_at_the_hard_limit():
    """One batch of half the real MNIST through three 4096-unit dense layers takes far longer
    than 1 s + GRACE_S: the per-batch budget check never gets its turn, so the hard limit
    kills the training process."""
    require(SHARED_MNIST.exists(), "../shared/data/mnist.npz")
    run = copy.deepcopy(TINY_RUN)
    run["dataset"].update(name="npz", path=str(SHARED_MNIST), pixel_scale=255.0, test_fraction=None)
    run["model"].update(conv_layers=1, filters=2, dense_layers=3, dense_units=4096)
    run["training"].update(epochs=1, batch_size=30000, time_budget_s=1.0)
    result = LocalExecutor(None).run(run)
    assert result["status"] == "failed" and result["failure"]["code"] == failures.TIME_BUDGET, result
    assert result["infeasible"] is True
    assert result["reason"].startswith(f"time budget exceeded: training.time_budget_s=1.0 and {GRACE_S:g}s more")
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


def test_preflight_refuses_a_search_space_that_reaches_the_size_limit(tmp_path, capsys):
    status, said = as_the_command_checks([*TINY_OVERRIDES, "model.filters=choice(8, 1024)", "model.filter_growth=4",
                                          "model.conv_layers=3", "model.dense_layers=1", "model.dense_units=8192",
                                          f"output_root={tmp_path}"], capsys)
    assert status == 2, said[-2000:]
    assert "model.filters=choice(8, 1024) reaches model.filters=1024: training.max_params=50000000" in said
    assert not (tmp_path / "sweeps").exists()
