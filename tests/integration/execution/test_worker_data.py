"""Data on the worker, through the emulator's real worker process: what lies outside its data
roots, special files and data over the caps are refused with a structured error before any
training; data that exists only on the worker trains, and its sha256 is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from conftest import REPO, SENTINEL_API_KEY, TINY_RUN, EmulatorProcess, read_json
from test_data_access import dataset, image_tree, png_header_only

from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution.payload import make_input

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
CANARY = "canary-5b2e-outside-the-volume"


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """The worker's network volume, with hostile entries beside real data, and a secret outside."""
    volume = tmp_path_factory.mktemp("runpod-volume")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.npz").write_text(CANARY)
    (volume / "out.npz").symlink_to(outside / "secret.npz")
    os.mkfifo(volume / "fifo.npz")
    (volume / "big.npz").write_bytes(b"\0" * 2_000_000)
    photos = image_tree(volume / "photos")
    png_header_only(photos / "a" / "bomb.png", 50_000, 50_000)
    return volume


@pytest.fixture(scope="module")
def worker(tmp_path_factory, volume):
    emu = EmulatorProcess(1, tmp_path_factory.mktemp("worker-data-logs"),
                          env={"CVSWEEP_DATA_ROOTS": str(volume), "CVSWEEP_MAX_DATA_FILE_BYTES": "1000000"})
    yield emu
    emu.close()


def npz_input(path: str, **dataset_settings) -> dict:
    config = {**TINY_RUN, "dataset": {"name": "npz", "path": path, "num_classes": 10, "pixel_scale": 255.0,
                                      "test_fraction": None, **dataset_settings}}
    return make_input(run_config_of(load_run_config(config)))


def folder_input(path: str) -> dict:
    config = {**TINY_RUN, "dataset": {"name": "image_folder", "path": path, "num_classes": 2, "pixel_scale": 255.0,
                                      "test_fraction": 0.5, "image_size": [8, 8], "color_mode": "grayscale"}}
    return make_input(run_config_of(load_run_config(config)))


def run_jobs(emu: EmulatorProcess, inputs: list[dict], timeout: float = 120) -> list[dict]:
    base = f"{emu.base_url}/local-endpoint"
    headers = {"Authorization": f"Bearer {SENTINEL_API_KEY}"}
    ids = [requests.post(f"{base}/run", json={"input": i}, headers=headers, timeout=30).json()["id"] for i in inputs]
    done, deadline = {}, time.monotonic() + timeout
    while len(done) < len(ids) and time.monotonic() < deadline:
        for job_id in set(ids) - set(done):
            status = requests.get(f"{base}/status/{job_id}", headers=headers, timeout=30).json()
            if status["status"] in ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"):
                done[job_id] = status
        time.sleep(0.2)
    assert len(done) == len(ids), "jobs still running: a worker stuck on a FIFO or a device?"
    return [done[job_id] for job_id in ids]


@pytest.mark.slow
def test_the_worker_refuses_data_it_must_not_read(worker, volume):
    worker.wait_for_workers()
    access = ["/dev/zero", str(volume / "fifo.npz"), "/proc/self/environ", "/etc/passwd", "/etc/no-such-file",
              str(volume / "out.npz"), str(volume / ".." / "outside" / "secret.npz")]
    statuses = run_jobs(worker, [npz_input(p) for p in access]
                        + [npz_input(str(volume / "big.npz")), folder_input(str(volume / "photos"))])
    errors = []
    for status in statuses:
        assert status["status"] == "FAILED" and "output" not in status, status  # never trained
        errors.append(json.loads(status["error"]))
        assert set(errors[-1]) == {"code", "problems"} and errors[-1]["code"] == "data_refused", errors[-1]
        assert CANARY not in status["error"]
    uniform = {error["problems"][0].replace(path, "<path>") for path, error in zip(access, errors)}
    assert uniform == {f"dataset.path=<path>: not a readable data file or folder under the worker's data roots "
                       f"({volume}; set CVSWEEP_DATA_ROOTS on the endpoint to change them)"}
    assert "2000000 bytes; the limit is CVSWEEP_MAX_DATA_FILE_BYTES=1000000" in errors[-2]["problems"][0]
    assert "bomb.png claims more pixels than CVSWEEP_MAX_IMAGE_PIXELS=64000000" in errors[-1]["problems"][0]
    assert all(w["alive"] for w in worker.admin("state")["workers"].values())


@pytest.mark.slow
def test_data_only_on_the_worker_trains_and_its_sha256_is_recorded(worker, volume, tmp_path):
    """The client runs (checks, pinning, the trial) while the file does not exist; it appears on
    the 'volume' only once the job waits in the queue."""
    worker.wait_for_workers()
    worker.reset_faults()
    worker.admin("faults", {"queue_delay_s": 5.0})
    path = volume / "only-on-worker.npz"
    env = {**os.environ, "RUNPOD_API_KEY": SENTINEL_API_KEY, "RUNPOD_ENDPOINT_ID": "local-endpoint",
           "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    args = ["-m", "executor=runpod", f"executor.base_url={worker.base_url}", "dataset=npz", f"dataset.path={path}",
            "dataset.location=worker", "dataset.num_classes=10", "model.conv_layers=1", "model.filters=8", "model.dense_layers=0",
            "training.epochs=2", "training.batch_size=64", "hydra.sweeper.n_trials=1", "plots=none",
            f"output_root={tmp_path}"]
    client = subprocess.Popen([sys.executable, "-m", "cvsweep", *args], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not worker.admin("state")["jobs"] and client.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not path.exists()
        rng = np.random.default_rng(0)
        np.savez(path, x_train=rng.integers(0, 255, (200, 8, 8), dtype=np.uint8), y_train=np.arange(200) % 10,
                 x_test=rng.integers(0, 255, (50, 8, 8), dtype=np.uint8), y_test=np.arange(50) % 10)
        output, _ = client.communicate(timeout=300)
    finally:
        client.kill()
        worker.reset_faults()
    assert client.returncode == 0, output[-3000:]
    result = read_json(next(tmp_path.glob("sweeps/*/0/result.json")))
    from cvsweep.data.sources import load_source

    assert result["status"] == "completed" and result["executed_on"]["worker_id"] == "worker-0"
    assert result["config"]["dataset"]["location"] == "worker" and result["config"]["dataset"]["sha256"] is None
    assert result["data"]["source_sha256"] == load_source(dataset(path)).sha256
