"""Issue 14: a worker that cannot be wedged. Through the emulator's real worker process (one,
so "the same worker" is meaningful): a job stopped by its executionTimeout or a cancel, or
stuck reading a FIFO, frees the worker within seconds; every kind of failure comes back
structured ({"code", "problems"}), never a traceback."""

from __future__ import annotations

import copy
import json
import os
import time
import zipfile

import pytest
import requests
from conftest import SENTINEL_API_KEY, TINY_RUN, EmulatorProcess

from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution.payload import make_input

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The worker's data root (CVSWEEP_DATA_ROOTS): files a job may name live here."""
    return tmp_path_factory.mktemp("volume")


@pytest.fixture(scope="module")
def worker(tmp_path_factory, data_root):
    emu = EmulatorProcess(1, tmp_path_factory.mktemp("one-worker-logs"), "--time-scale", "0.6",  # 5 s: 3 s
                          env={"CVSWEEP_DATA_ROOTS": str(data_root)})
    yield emu
    emu.close()


def job_input(replacing=(), **changes) -> dict:
    """TINY_RUN with these changes; the sections in ``replacing`` (another dataset kind or
    architecture, with settings of its own) replace TINY_RUN's instead of updating them."""
    run = copy.deepcopy(TINY_RUN)
    for section, values in changes.items():
        run[section] = values if section in replacing else {**run[section], **values}
    return make_input(run_config_of(load_run_config(run)))


def submit(emu, body: dict) -> str:
    headers = {"Authorization": f"Bearer {SENTINEL_API_KEY}"}
    return requests.post(f"{emu.base_url}/local/run", json=body, headers=headers, timeout=30).json()["id"]


def wait(emu, job_id: str, states=("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"), timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = emu.admin("state")["jobs"][job_id]
        if status["status"] in states:
            return status
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id}: {status}")


def started_within(emu, job_id: str, seconds: float) -> float:
    """Seconds until the worker took the job (IN_PROGRESS)."""
    begun = time.monotonic()
    wait(emu, job_id, states=("IN_PROGRESS", "COMPLETED", "FAILED"), timeout=seconds)
    return time.monotonic() - begun


def assert_free_again(emu, pid_before: int) -> None:
    """The same worker process takes the next job and completes it. The bound only catches a
    wedged worker (before: it trained on for ~50 s); uncontended it takes the job within a
    second or two (remote/README.md)."""
    next_job = submit(emu, {"input": job_input()})
    assert started_within(emu, next_job, 20) < 20
    status = wait(emu, next_job)
    assert status["status"] == "COMPLETED" and status["output"]["status"] == "completed", status
    assert emu.admin("state")["workers"]["worker-0"]["pid"] == pid_before  # not replaced


def test_execution_timeout_stops_the_job_and_frees_the_worker(worker):
    worker.wait_for_workers()
    pid = worker.admin("state")["workers"]["worker-0"]["pid"]
    long = submit(worker, {"input": job_input(training={"epochs": 60, "early_stopping_patience": 0}),
                           "policy": {"executionTimeout": 5000}})
    assert wait(worker, long)["status"] == "TIMED_OUT"
    assert_free_again(worker, pid)


def test_a_cancelled_job_frees_the_worker(worker):
    worker.wait_for_workers()
    pid = worker.admin("state")["workers"]["worker-0"]["pid"]
    long = submit(worker, {"input": job_input(training={"epochs": 60, "early_stopping_patience": 0})})
    wait(worker, long, states=("IN_PROGRESS",))
    training = children(pid)  # the worker's training process, TensorFlow imported
    headers = {"Authorization": f"Bearer {SENTINEL_API_KEY}"}
    requests.post(f"{worker.base_url}/local/cancel/{long}", headers=headers, timeout=30)
    assert wait(worker, long)["status"] == "CANCELLED"
    assert_free_again(worker, pid)
    # The run was stopped at a batch end, not its process killed: the next job trained in the
    # same warm training process (a pruned trial's job is cancelled like this one).
    assert training and training <= children(pid)
    log = (worker.log_dir / "worker-0.log").read_text()
    assert "killing its training process" not in log and "killed the training process" not in log


def children(pid: int) -> set[int]:
    return {int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()}


def test_a_fifo_as_dataset_path_does_not_wedge_the_worker(worker, data_root):
    fifo = data_root / "data.npz"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: none will
    worker.wait_for_workers()
    pid = worker.admin("state")["workers"]["worker-0"]["pid"]
    stuck = submit(worker, {"input": job_input(dataset={"name": "npz", "path": str(fifo), "pixel_scale": 255.0,
                                                         "test_fraction": None}),
                            "policy": {"executionTimeout": 5000}})
    status = wait(worker, stuck)  # refused unread (a FIFO is no regular file), not timed out
    assert status["status"] == "FAILED" and json.loads(status["error"])["code"] == "data_refused", status
    assert_free_again(worker, pid)


def _text_npz_with_a_bad_pickle(path) -> None:
    """A Keras-layout text .npz whose x_train pickle calls an allowed function with the wrong
    arguments: the restricted unpickler raises TypeError."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    bad = npy + b"cnumpy.core.multiarray\n_reconstruct\n)R."
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            archive.writestr(f"{key}.npy", bad)


def _structured(status: dict) -> dict:
    """The failure a job answered with: its result's ``failure``, or its FAILED error."""
    if status["status"] == "COMPLETED":
        assert status["output"]["status"] == "failed", status
        failure = status["output"]["failure"]
    else:
        assert status["status"] == "FAILED", status
        failure = json.loads(status["error"])
    assert set(failure) == {"code", "problems"} and failure["problems"], failure
    assert "Traceback" not in json.dumps(status)
    return failure


def test_every_kind_of_failure_comes_back_structured(worker, data_root):
    bad_pickle = data_root / "bad.npz"
    _text_npz_with_a_bad_pickle(bad_pickle)
    base = job_input()
    surrogate = copy.deepcopy(base)
    surrogate["config"]["dataset"]["path"] = "data\udc80.npz"  # cannot be encoded as UTF-8
    nul = copy.deepcopy(base)
    nul["config"]["dataset"]["path"] = "data\x00.npz"
    giant = {"conv_layers": 3, "filters": 1024, "filter_growth": 4.0, "kernel_size": 1, "pooling": "none",
             "dense_layers": 1, "dense_units": 8192}
    cases = {
        "lone surrogate": (surrogate, "invalid_config"),
        "NUL byte in a path": (nul, "invalid_config"),
        "restricted unpickler's TypeError": (job_input(
            replacing=("dataset", "model"),
            dataset={"name": "imdb", "path": str(bad_pickle), "num_classes": 2, "vocab_size": 100,
                     "sequence_length": 10},
            model={"architecture": "lstm", "dense_layers": 0, "embedding_dim": 4, "lstm_units": 4}), "invalid_data"),  # the worker's data check, before training
        "a schema-valid giant CNN": (job_input(model=giant), "invalid_config"),
        "the same with the size limits raised: ResourceExhaustedError": (job_input(
            model=giant, training={"max_params": 10**11, "max_activation_mb": 10**7, "batch_size": 1}),
            "out_of_memory"),
    }
    worker.wait_for_workers()
    jobs = {name: submit(worker, {"input": data}) for name, (data, _) in cases.items()}
    for name, (_, code) in cases.items():
        failure = _structured(wait(worker, jobs[name]))
        assert failure["code"] == code, (name, failure)
    oom = wait(worker, jobs["the same with the size limits raised: ResourceExhaustedError"])["output"]
    assert oom["infeasible"] is True and "8,661,350,410 parameters" in oom["reason"]
    assert worker.admin("state")["workers"]["worker-0"]["alive"]
