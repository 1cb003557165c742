"""A second opinion we did not write: the real remote/handler.py under the runpod SDK's own
local API server (``--rp_serve_api``, runpod/serverless/modules/rp_fastapi.py), spoken to over
plain HTTP. That server has no endpoint-id segment, no /health, no /cancel and no GET /status,
so cvsweep's client cannot run against it: the test posts to its ``/runsync`` route itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from conftest import REPO, free_port

TEST_INPUT = REPO / "remote" / "test_input.json"
# The operator's cap on a result: the test input's result fits it, its model inline does not.
RESULT_CAP = 200_000
# What remote/Dockerfile's build arguments set in an image built by cvsweep deploy.
IMAGE, COMMIT = "registry.example/me/cvsweep-worker:0123456789ab-cafe0123", "0123456789ab" + "0" * 28

pytestmark = pytest.mark.slow  # a server process that imports TensorFlow, and real training


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory):
    """``python remote/handler.py --rp_serve_api`` on a free port of 127.0.0.1, once TensorFlow
    is loaded and the server answers."""
    port = free_port()
    cache = tmp_path_factory.mktemp("sdk-cache")
    env = {**os.environ, "CVSWEEP_CACHE_DIR": str(cache), "CVSWEEP_DATA_ROOTS": str(cache), "PYTHONUNBUFFERED": "1",
           "CVSWEEP_MAX_RESULT_BYTES": str(RESULT_CAP), "CVSWEEP_IMAGE": IMAGE, "CVSWEEP_IMAGE_COMMIT": COMMIT}
    log = (tmp_path_factory.mktemp("sdk-log") / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "remote" / "handler.py"), "--rp_serve_api", "--rp_api_port", str(port),
         "--rp_api_host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, f"the SDK server exited with {process.returncode}; see {log.name}"
        try:
            requests.get(f"{base}/docs", timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, f"the SDK server did not answer; see {log.name}"
            time.sleep(0.5)
    yield base
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def test_the_test_input_completes_with_its_fingerprint(sdk_server):
    job = json.loads(TEST_INPUT.read_text())
    reply = requests.post(f"{sdk_server}/runsync", json=job, timeout=300)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "COMPLETED", body
    assert body["output"]["status"] == "completed"
    assert body["output"]["fingerprint"] == job["input"]["fingerprint"]
    assert body["output"]["executed_on"]["image"] == IMAGE and body["output"]["executed_on"]["image_commit"] == COMMIT


def test_a_model_that_would_not_fit_the_result_is_left_out_with_the_reason(sdk_server):
    job = json.loads(TEST_INPUT.read_text())
    job["input"]["transport"] = {"max_inline_bytes": 8 * 2**20, "store": None}
    reply = requests.post(f"{sdk_server}/runsync", json=job, timeout=300)
    body = reply.json()
    assert body["status"] == "COMPLETED", body
    assert len(reply.content) <= RESULT_CAP + 100  # the local server's own few keys around the output
    assert body["output"]["fingerprint"] == job["input"]["fingerprint"]
    assert f"over the worker's cap of {RESULT_CAP} (CVSWEEP_MAX_RESULT_BYTES" in body["output"]["model"]["missing"]


def test_a_hostile_input_fails_with_the_structured_error(sdk_server):
    job = json.loads(TEST_INPUT.read_text())
    job["input"]["config"]["training"]["epochs"] = "__import__('os').system('id')"
    reply = requests.post(f"{sdk_server}/runsync", json=job, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "FAILED", body
    assert "output" not in body
    error = json.loads(body["error"])
    assert error["code"] == "invalid_config"
    assert any("training.epochs" in problem for problem in error["problems"]), error
