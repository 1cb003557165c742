"""executor=runpod's settings that RunPod bounds (serverless/endpoints/send-requests.mdx: an
executionTimeout of 5 s to 7 days, a ttl of 10 s to 7 days, the ttl counting from submission
over queue, run and result) and the endpoint id that becomes part of every URL: each refused
before any request, naming the setting, through the command and through the service."""

from __future__ import annotations

import pytest
from conftest import SENTINEL_API_KEY, ServiceApp, as_the_command_checks
from omegaconf import OmegaConf

from cvsweep.config.schema import ConfigError, RunpodExecutorConfig
from cvsweep.config.validate import runpod_problems
from cvsweep.execution.checks import check_setup

HOSTILE_ID = "../../steal/anything?"
NOWHERE = "http://127.0.0.1:9/v2"  # a request would fail as unreachable, not as refused settings


def _executor(**changes):
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": "ysrxd1jg9lx1qb", "base_url": NOWHERE, "retries": 0, **changes})
    return cfg


def test_the_defaults_are_within_runpods_bounds():
    assert runpod_problems(_executor()) == []


@pytest.mark.parametrize("changes, expected", [
    ({"execution_timeout_s": 1.0}, "executor.execution_timeout_s=1.0: allowed is [5, 604800]"),
    ({"execution_timeout_s": 700_000.0, "ttl_s": 604_800.0}, "executor.execution_timeout_s=700000.0: allowed is [5, 604800]"),
    ({"ttl_s": 1.0}, "executor.ttl_s=1.0: allowed is [10, 604800]"),
    ({"ttl_s": 700_000.0}, "executor.ttl_s=700000.0: allowed is [10, 604800]"),
])
def test_a_policy_out_of_runpods_bounds_is_refused(changes, expected):
    assert expected in runpod_problems(_executor(**changes))


def test_a_ttl_that_cannot_cover_the_execution_timeout_is_refused_in_one_line_naming_both():
    problems = runpod_problems(_executor(execution_timeout_s=600.0, ttl_s=620.0))
    assert problems == ["executor.ttl_s=620: must be at least executor.execution_timeout_s=600 + 60 s, as RunPod "
                        "deletes a job when its TTL runs out, even mid-run; raise executor.ttl_s to 660 or more"]
    assert runpod_problems(_executor(execution_timeout_s=600.0, ttl_s=660.0)) == []


@pytest.mark.parametrize("endpoint_id", [HOSTILE_ID, "abc/def", "abc.def", "a?b", "a%2fb", "a#b", "a b", "-abc",
                                         "x" * 65])
def test_an_endpoint_id_that_is_not_one_is_refused_before_any_request(endpoint_id, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-test-policy")
    with pytest.raises(ConfigError) as err:
        check_setup(_executor(endpoint_id=endpoint_id))  # a request would be "cannot reach the endpoint"
    assert err.value.problems == [f"executor.endpoint_id={endpoint_id!r}: not a RunPod endpoint id (letters, "
                                  "digits, '-' and '_', at most 64); copy the id from the endpoint's page in the "
                                  "RunPod console"]


@pytest.mark.parametrize("endpoint_id", ["ysrxd1jg9lx1qb", "qwen3-32b-awq", "local_endpoint", "x" * 64])
def test_runpods_own_id_forms_are_accepted(endpoint_id):
    assert runpod_problems(_executor(endpoint_id=endpoint_id)) == []


def test_the_command_refuses_a_hostile_endpoint_id_before_any_trial(capsys, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-test-policy")
    status, said = as_the_command_checks(["executor=runpod", f"executor.endpoint_id='{HOSTILE_ID}'",
                                          f"executor.base_url={NOWHERE}"], capsys)
    assert status == 2 and f"executor.endpoint_id='{HOSTILE_ID}': not a RunPod endpoint id" in said, said


def test_the_command_refuses_a_ttl_shorter_than_the_timeout(capsys, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-test-policy")
    status, said = as_the_command_checks(["executor=runpod", "executor.endpoint_id=abc123xyz",
                                          "executor.execution_timeout_s=3600", "executor.ttl_s=3600",
                                          f"executor.base_url={NOWHERE}"], capsys)
    assert status == 2 and "executor.ttl_s=3600: must be at least executor.execution_timeout_s=3600 + 60 s" in said


def test_the_service_refuses_a_hostile_endpoint_id_and_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
    server = ServiceApp(tmp_path / "outputs")
    try:
        response = server.post("/sweeps", json={"overrides": ["executor=runpod", f"executor.endpoint_id='{HOSTILE_ID}'"]})
        assert response.status_code == 422, response.text
        assert SENTINEL_API_KEY not in response.text
        assert any("not a RunPod endpoint id" in p["msg"] for p in response.json()["detail"]), response.text
        assert server.get("/health").json()["running"] == 0
    finally:
        server.close()
