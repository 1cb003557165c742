"""executor=runpod's check before a sweep (cvsweep/execution/checks.py), in process: the
settings it needs, then the endpoint's health answer over real HTTP on 127.0.0.1 from the
emulator's API served by a thread here (no workers)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO
from omegaconf import OmegaConf

from cvsweep.config.schema import ConfigError, RunpodExecutorConfig
from cvsweep.execution.checks import check_setup, endpoint_health, missing_settings

sys.path.insert(0, str(REPO / "remote"))
from emulator import Emulator, Faults, serve_in_thread  # noqa: E402

KEY = "sk-test-checks"


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    served = Emulator(0, KEY, Faults(), tmp_path, endpoint_id="local-endpoint")
    server = serve_in_thread(served)
    yield served
    server.shutdown()
    server.server_close()


def _settings(emulator: Emulator, **changes):
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": "local-endpoint", "base_url": f"http://127.0.0.1:{emulator.port}/v2",
                    "retries": 1, "backoff_s": 0.01, "backoff_max_s": 0.01, **changes})
    return cfg


def test_missing_settings_name_each_setting_and_its_fix(monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": None, "base_url": "ftp://example"})
    problems = missing_settings(cfg)
    assert problems[0] == "executor=runpod needs the environment variable RUNPOD_API_KEY (your RunPod API key)"
    assert "set the environment variable RUNPOD_ENDPOINT_ID or executor.endpoint_id=<id>" in problems[1]
    assert problems[2] == "executor.base_url=ftp://example: must start with http:// or https://"
    with pytest.raises(ConfigError) as err:
        check_setup(cfg)
    assert err.value.problems == problems


def test_an_endpoint_scaled_to_zero_passes_and_its_health_is_read(emulator):
    check_setup(_settings(emulator))  # no worker up: a warning, not a refusal
    assert endpoint_health(_settings(emulator))["workers"]["idle"] == 0


@pytest.mark.parametrize("fault,expected", [
    ({"unhealthy_workers": 2}, "every worker of the endpoint is unhealthy (2)"),
    ({"malformed_health": 1}, "no 'workers' object of counts"),
    ({"http_status": 500, "http_errors": 5}, "the endpoint's health check failed: health request failed: HTTP 500"),
])
def test_an_endpoint_that_cannot_run_trials_is_refused_before_the_sweep(emulator, fault, expected):
    for name, value in fault.items():
        setattr(emulator.faults, name, value)
    with pytest.raises(ConfigError) as err:
        check_setup(_settings(emulator))
    assert expected in str(err.value) and str(err.value).startswith("executor.endpoint_id=local-endpoint: ")


def test_a_wrong_key_or_endpoint_is_named_with_its_fix(emulator, monkeypatch):
    with pytest.raises(ConfigError) as err:
        check_setup(_settings(emulator, endpoint_id="no-such-endpoint"))
    assert "executor.endpoint_id=no-such-endpoint: no such endpoint at" in str(err.value)
    monkeypatch.setenv("RUNPOD_API_KEY", "sk-wrong")
    with pytest.raises(ConfigError) as err:
        check_setup(_settings(emulator))
    assert str(err.value).startswith("RUNPOD_API_KEY: the endpoint refused the key (HTTP 401)")
    assert "sk-wrong" not in str(err.value)


def test_an_endpoint_nobody_answers_at_is_unreachable(emulator):
    with pytest.raises(ConfigError) as err:
        check_setup(_settings(emulator, base_url="http://127.0.0.1:9/v2"))
    assert str(err.value).startswith("executor.base_url=http://127.0.0.1:9/v2: cannot reach the endpoint: ")
