"""Credentials from ./.env (cvsweep/execution/env_file.py): read by cvsweep, cvsweep deploy and
cvsweep serve; the environment wins; a file others may read is warned about; no value is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BARE_ENDPOINT_ID, SENTINEL_API_KEY, TINY_OVERRIDES, read_json

from cvsweep.execution.env_file import VARIABLES, load_env_file


@pytest.fixture
def clean_env(monkeypatch):
    """None of the variables a .env may set: what loading sets is undone after the test."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def write_env(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / ".env"
    path.write_text(text)
    path.chmod(mode)
    return path


def cli(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    """``python -m MODULE ARGS`` in ``cwd`` with no RUNPOD_/AWS_ variables but those in ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**base, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_a_dotenv_file_sets_what_the_environment_lacks(tmp_path, clean_env, monkeypatch):
    path = write_env(tmp_path, "\n".join([
        "# RunPod",
        f"RUNPOD_API_KEY='{SENTINEL_API_KEY}'",
        'export RUNPOD_ENDPOINT_ID="from-file"   # the endpoint',
        "AWS_ACCESS_KEY_ID=AKIA-from-file",
        "AWS_SECRET_ACCESS_KEY=secret with ${NOT_EXPANDED}",
        "AWS_DEFAULT_REGION=",
        "OTHER_SETTING=x",
    ]))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-from-environment")
    warnings = []
    loaded = load_env_file(path, warn=warnings.append)
    assert loaded == ["RUNPOD_API_KEY", "RUNPOD_ENDPOINT_ID", "AWS_SECRET_ACCESS_KEY"]
    assert os.environ["RUNPOD_API_KEY"] == SENTINEL_API_KEY and os.environ["RUNPOD_ENDPOINT_ID"] == "from-file"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIA-from-environment"  # the environment wins
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "secret with ${NOT_EXPANDED}"
    assert "AWS_DEFAULT_REGION" not in os.environ  # empty: not set
    assert warnings == [f"{path.resolve()}: ignored OTHER_SETTING; cvsweep reads only {', '.join(VARIABLES)} from it"]
    assert load_env_file(tmp_path / "absent.env", warn=warnings.append) == []


def test_a_dotenv_file_others_may_read_is_warned_about_by_name_never_by_value(tmp_path, clean_env):
    path = write_env(tmp_path, f"RUNPOD_API_KEY={SENTINEL_API_KEY}\n", mode=0o644)
    warnings = []
    load_env_file(path, warn=warnings.append)
    assert warnings == [f"{path.resolve()} can be read by others (mode 0644) and may hold credentials: "
                        f"chmod 600 {path.resolve()}"]


@pytest.mark.slow
def test_cvsweep_runs_a_remote_trial_with_credentials_only_in_dotenv(emulator, tmp_path):
    emulator.wait_for_workers()
    emulator.reset_faults()
    write_env(tmp_path, f"RUNPOD_API_KEY={SENTINEL_API_KEY}\nRUNPOD_ENDPOINT_ID=local-endpoint\n"
                        f"RUNPOD_ENDPOINT_BASE_URL={emulator.base_url}\n")
    proc = cli("cvsweep", "executor=runpod", "artifacts=none", *TINY_OVERRIDES, "training.seed=41", cwd=tmp_path,
               env={"CVSWEEP_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_json(next((tmp_path / "outputs").rglob("result.json")))
    assert result["status"] == "completed" and result["remote"]["endpoint_id"] == "local-endpoint"
    assert ".env" not in proc.stderr  # mode 0600: no warning
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "outputs").rglob("*") if p.is_file())
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr + written


@pytest.mark.slow
def test_the_environment_wins_over_dotenv_and_a_readable_file_is_warned_about(bare_endpoint, tmp_path):
    path = write_env(tmp_path, f"RUNPOD_API_KEY={SENTINEL_API_KEY}\nRUNPOD_ENDPOINT_ID={BARE_ENDPOINT_ID}\n"
                               f"RUNPOD_ENDPOINT_BASE_URL={bare_endpoint.base_url}\n", mode=0o644)
    proc = cli("cvsweep", "executor=runpod", *TINY_OVERRIDES, cwd=tmp_path,
               env={"RUNPOD_ENDPOINT_ID": "from-environment"})
    assert proc.returncode == 2
    assert f"executor.endpoint_id=from-environment: no such endpoint at {bare_endpoint.base_url} (HTTP 404)" \
        in proc.stderr
    assert f"{path} can be read by others (mode 0644) and may hold credentials: chmod 600 {path}" in proc.stderr
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr


def test_deploy_reads_its_key_endpoint_and_rest_url_from_dotenv(bare_endpoint, tmp_path):
    rest_url = bare_endpoint.base_url.rsplit("/v2", 1)[0] + "/v2"
    write_env(tmp_path, f"RUNPOD_API_KEY={SENTINEL_API_KEY}\nRUNPOD_ENDPOINT_ID={BARE_ENDPOINT_ID}\n"
                        f"RUNPOD_REST_URL={rest_url}\n")
    proc = cli("cvsweep", "deploy", "--skip-build", "--skip-smoke-test", "--skip-push", "--allow-dirty", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = proc.stdout.splitlines()[-1].removeprefix("deployed: ")
    assert f"update: endpoint {BARE_ENDPOINT_ID} now names {image}" in proc.stdout
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr


def test_the_service_reads_dotenv_when_it_starts(tmp_path):
    path = write_env(tmp_path, f"RUNPOD_API_KEY={SENTINEL_API_KEY}\n", mode=0o640)
    # Settings it refuses: it has read .env (its first step) and stops before it binds a port.
    proc = cli("cvsweep", "serve", "--max-running", "0", "--output-root", str(tmp_path / "out"), cwd=tmp_path,
               timeout=120)
    assert proc.returncode == 2 and "cvsweep serve: serve.max_running=0" in proc.stderr, proc.stderr
    assert f"{path} can be read by others (mode 0640)" in proc.stderr and SENTINEL_API_KEY not in proc.stderr
