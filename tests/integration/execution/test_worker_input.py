"""The worker's handler refuses anything but a valid input, with a structured error and no
training; a valid input trains with the same train() and echoes the fingerprint."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import time

import pytest
from conftest import REPO, TINY_RUN, read_json

from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution.payload import MAX_INPUT_BYTES, PayloadError, accept_input, make_input

sys.path.insert(0, str(REPO / "remote"))
from handler import handler as async_handler  # noqa: E402


def handler(job: dict) -> dict:
    """The worker's (async) handler, run as the SDK's loop runs it."""
    return asyncio.run(async_handler(job))


def _refusal(job_input) -> dict:
    started = time.monotonic()
    reply = handler({"id": "test", "input": job_input})
    assert set(reply) == {"error"}, reply
    # No training: the reply is an error, not a result. The bound catches a hang only.
    assert time.monotonic() - started < 120
    return json.loads(reply["error"])


def _good_input() -> dict:
    """What a client sends: the complete, normalised run config and its fingerprint."""
    return make_input(run_config_of(load_run_config(copy.deepcopy(TINY_RUN))))


def test_test_input_json_is_a_valid_job():
    accept_input(read_json(REPO / "remote" / "test_input.json")["input"])


def test_a_valid_input_trains_and_echoes_the_fingerprint():
    job_input = _good_input()
    reply = handler({"id": "test", "input": job_input})
    assert reply["status"] == "completed" and reply["fingerprint"] == job_input["fingerprint"]
    json.dumps(reply, allow_nan=False)


def test_a_precision_the_workers_hardware_cannot_run_is_a_structured_failure():
    """A valid input, refused where it would train: the worker's training process checks its
    own hardware (mixed_float16 needs a GPU; run where there is none)."""
    from cvsweep.config.schema import ConfigError, Precision
    from cvsweep.training import precision

    try:
        precision.check(Precision.mixed_float16)
        pytest.skip("this machine has a GPU that runs mixed_float16")
    except ConfigError:
        pass
    job_input = make_input(run_config_of(load_run_config({**copy.deepcopy(TINY_RUN), "training": {
        **TINY_RUN["training"], "precision": "mixed_float16"}})))
    reply = handler({"id": "test", "input": job_input})
    assert reply["status"] == "failed" and reply["fingerprint"] == job_input["fingerprint"]
    assert reply["failure"]["code"] == "invalid_config"
    assert reply["failure"]["problems"][0].startswith("training.precision=mixed_float16: needs a GPU")


@pytest.mark.parametrize(
    "mutate,code,fragment",
    [
        (lambda d: d.update(extra=1), "invalid_input", "unknown: ['extra']"),
        (lambda d: d.pop("fingerprint"), "invalid_input", "missing: ['fingerprint']"),
        (lambda d: d.update(schema_version=99), "schema_version_mismatch", "schema_version=99"),
        (lambda d: d.update(fingerprint="abc"), "invalid_input", "64 lowercase hex"),
        (lambda d: d.update(fingerprint="0" * 64), "fingerprint_mismatch", "but this worker computes"),
        (lambda d: d["config"]["model"].update(dropuot=0.1), "invalid_config", "model.dropuot"),
        (lambda d: d["config"]["training"].update(epochs="many"), "invalid_config", "training.epochs"),
        (lambda d: d["config"]["training"].update(epochs=0), "invalid_config", "training.epochs=0: allowed is"),
        (lambda d: d["config"]["model"].update(_target_="os.system"), "invalid_config", "model._target_"),
        (lambda d: d["config"].update(_target_="builtins.eval"), "invalid_config", "_target_"),
        (lambda d: d["config"]["dataset"].update(path="${oc.env:RUNPOD_API_KEY}"), "invalid_config",
         "dataset.path: interpolations"),
        (lambda d: d["config"]["dataset"].update(path="x" * MAX_INPUT_BYTES), "invalid_input", "the limit is"),
    ],
)
def test_bad_inputs_get_a_structured_error(mutate, code, fragment):
    job_input = _good_input()
    mutate(job_input)
    error = _refusal(job_input)
    assert error["code"] == code
    assert any(fragment in problem for problem in error["problems"]), error


@pytest.mark.parametrize("job_input", [None, [], "config", 3, {"config": None}])
def test_inputs_of_the_wrong_shape(job_input):
    assert _refusal(job_input)["code"] == "invalid_input"


def test_accept_input_returns_the_normalised_config():
    assert accept_input(_good_input()) == _good_input()["config"]
    with pytest.raises(PayloadError):
        accept_input({"schema_version": True, "fingerprint": "0" * 64, "config": {}})
